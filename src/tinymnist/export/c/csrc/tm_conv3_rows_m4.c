/* tm_conv3_rows_m4.c - tm_conv3_rows as a Thumb-2 routine for the Cortex-M4 (the planar 3x3 conv's
 * loop over channels and pixel pairs: 31 instructions per output pair; contract and job layout in
 * tm_runtime.h, C specification in tm_conv3x3_planar.c). The ring slots are read at immediate
 * offsets (TM_SLOT, 2 * TM_SLOT), so it is built only where those fit (TM_THUMB2_CONV3). */
#include "tm_runtime.h"

#if TM_THUMB2_CONV3
/* The routine reads the job at these offsets (32-bit pointers). */
typedef char tm_conv3_job_layout[offsetof(tm_conv3_job, row0) == 4 && offsetof(tm_conv3_job, bias) == 16
                                 && offsetof(tm_conv3_job, in) == 32 && offsetof(tm_conv3_job, wide) == 48
                                 && offsetof(tm_conv3_job, pairs) == 60 ? 1 : -1];

#define TM_STR2(x) #x
#define TM_STR(x) TM_STR2(x)

__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_conv3_rows_m4, %function\n"
    "    .thumb_func\n"
    /* The pixel-pair loop. In: r0 the slot-0 input, r1..r3 ac of slots 0..2, r4 the middle
     * weights of slots 0 (bottom) and 1 (top), r5 that of slot 2, lr the bias, r10 the output,
     * r11 its stride, r12 the end of the input; [sp] the multiplier and the offset. */
    "    .macro tm_conv3_pairs store\n"
    "5:  ldr r9, [r0, #" TM_STR(TM_SLOT) "]\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r2, lr\n"
    "    smlabt r6, r9, r4, r6\n"
    "    smlad r7, r9, r2, lr\n"
    "    smlatt r7, r8, r4, r7\n"
    "    ldr r9, [r0, #(2 * " TM_STR(TM_SLOT) ")]\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r3, r6\n"
    "    smlabb r6, r9, r5, r6\n"
    "    smlad r7, r9, r3, r7\n"
    "    smlatb r7, r8, r5, r7\n"
    "    ldr r9, [r0], #2\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r1, r6\n"
    "    smlabb r6, r9, r4, r6\n"
    "    smlad r7, r9, r1, r7\n"
    "    smlatb r7, r8, r4, r7\n"
    "    ldrd r8, r9, [sp]\n"
    "    smmlar r6, r6, r8, r9\n"         /* offset + rounded high word */
    "    smmlar r7, r7, r8, r9\n"
    "    ssat r6, #8, r6\n"
    "    ssat r7, #8, r7\n"
    "    \\store r6, [r10]\n"
    "    \\store r7, [r10, r11]\n"
    "    add r10, r10, r11, lsl #1\n"
    "    cmp r0, r12\n"
    "    bne 5b\n"
    "    .endm\n"
    "tm_conv3_rows_m4:\n"
    "    push {r0, r4-r11, lr}\n"
    "    sub sp, sp, #12\n"                /* [sp] multiplier, [sp, #4] offset, [sp, #8] bias; job at [sp, #12] */
    "1:  ldr r12, [sp, #12]\n"
    "    ldm r12, {r0, r1, r2, r3}\n"      /* weights, the offsets of the slots' kernel rows */
    "    add r1, r1, r0\n"
    "    add r2, r2, r0\n"
    "    add r3, r3, r0\n"
    "    add r0, r0, #9\n"
    "    str r0, [r12]\n"
    "    ldrsb r4, [r1, #1]\n"
    "    ldrsb r5, [r2, #1]\n"
    "    pkhbt r4, r4, r5, lsl #16\n"      /* middle weights of slots 0 and 1 */
    "    ldrsb r6, [r1]\n"
    "    ldrsb r7, [r1, #2]\n"
    "    pkhbt r1, r6, r7, lsl #16\n"      /* ac of slot 0 */
    "    ldrsb r6, [r2]\n"
    "    ldrsb r7, [r2, #2]\n"
    "    pkhbt r2, r6, r7, lsl #16\n"
    "    ldrsb r5, [r3, #1]\n"
    "    ldrsb r6, [r3]\n"
    "    ldrsb r7, [r3, #2]\n"
    "    pkhbt r3, r6, r7, lsl #16\n"
    "    add r0, r12, #16\n"
    "    ldm r0, {r6, r7, r8, r9}\n"      /* bias, multiplier, offset; offset step */
    "    ldr r10, [r6], #4\n"
    "    ldr r11, [r7], #4\n"
    "    ldr lr, [r8]\n"
    "    add r8, r8, r9\n"
    "    stm r0, {r6, r7, r8}\n"
    "    strd r11, lr, [sp]\n"
    "    str r10, [sp, #8]\n"
    "    add r10, r12, #32\n"
    "    ldm r10, {r0, r6, r7, r11}\n"    /* input plane, plane step, output, stride */
    "    ldrd r8, r9, [r10, #16]\n"       /* wide, o */
    "    add r6, r6, r0\n"
    "    str r6, [r12, #32]\n"
    "    add r6, r9, #1\n"
    "    str r6, [r12, #52]\n"
    "    ldr r12, [r12, #60]\n"
    "    add r12, r0, r12, lsl #1\n"      /* the input's end: 2 bytes per pair */
    "    ldr lr, [sp, #8]\n"
    "    cmp r8, #0\n"
    "    beq 3f\n"
    "    eor r6, r9, r9, lsr #1\n"        /* tm_mid_lane(o): swap bits 0 and 1 of o */
    "    and r6, r6, #1\n"
    "    add r6, r6, r6, lsl #1\n"
    "    eor r9, r9, r6\n"
    "    add r10, r7, r9, lsl #1\n"
    "    tm_conv3_pairs strh\n"
    "    b 4f\n"
    "3:  add r10, r7, r9\n"
    "    tm_conv3_pairs strb\n"
    "4:  ldr r12, [sp, #12]\n"
    "    ldrd r6, r7, [r12, #52]\n"       /* o, channels */
    "    cmp r6, r7\n"
    "    bne 1b\n"
    "    add sp, sp, #12\n"
    "    pop {r0, r4-r11, pc}\n"
    "    .purgem tm_conv3_pairs\n"
    "    .size tm_conv3_rows_m4, . - tm_conv3_rows_m4\n");
#endif
