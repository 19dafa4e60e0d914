/* tm_conv3_rows_m4.c - tm_conv3_rows as a Thumb-2 routine for the Cortex-M4 (the planar 3x3 conv's
 * loop over channels and pixel pairs: 31 instructions per output pair, 19 per channel; contract
 * and job layout in tm_runtime.h, C specification in tm_conv3x3_planar.c). The ring slots are read
 * at immediate offsets (TM_SLOT, 2 * TM_SLOT), so it is built only where those fit
 * (TM_THUMB2_CONV3).
 *
 * A channel's set-up is short because nothing is derived per channel that could be made once: the
 * job (its frame on the stack) holds the byte offsets of the rotated kernel rows' weight words,
 * the input's skip from one plane to the next and the output steps; the channel's record gives
 * its three weight words (five SXTB16 unpack them into the loop's registers) and, with one LDRD
 * that also advances to the next record, its multiplier and bias. The input and output pointers
 * run on from where the pixel loop left them (the output through the stored channel start). */
#include "tm_runtime.h"

#if TM_THUMB2_CONV3
/* The routine reads the job and the records at these offsets (32-bit pointers). */
typedef char tm_conv3_job_layout[offsetof(tm_conv3_job, steps) == 4 && offsetof(tm_conv3_job, multiplier) == 12
                                 && offsetof(tm_conv3_job, row0) == 20 && offsetof(tm_conv3_job, in_skip) == 32
                                 && offsetof(tm_conv3_job, stride) == 40 && offsetof(tm_conv3_job, wide) == 48
                                 && offsetof(tm_conv3_job, in) == 52 ? 1 : -1];
typedef char tm_conv3_channel_layout[offsetof(tm_conv3_channel, bias) == 4 && offsetof(tm_conv3_channel, w) == 8
                                     && sizeof(tm_conv3_channel) == 20 ? 1 : -1];

#define TM_STR2(x) #x
#define TM_STR(x) TM_STR2(x)

__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_conv3_rows_m4, %function\n"
    "    .thumb_func\n"
    /* The pixel-pair loop, then the next channel's set-up. In: r0 the slot-0 input, r1 r2 r10 ac
     * of slots 0..2, r4 the middle weights of slots 0 (bottom) and 1 (top), r5 that of slot 2
     * (bottom), lr the bias, r3 the output, r11 its stride, r12 the end of the input; [sp, #12]
     * the multiplier and the offset. */
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
    "    smlad r6, r8, r10, r6\n"
    "    smlabb r6, r9, r5, r6\n"
    "    smlad r7, r9, r10, r7\n"
    "    smlatb r7, r8, r5, r7\n"
    "    ldr r9, [r0], #2\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r1, r6\n"
    "    smlabb r6, r9, r4, r6\n"
    "    smlad r7, r9, r1, r7\n"
    "    smlatb r7, r8, r4, r7\n"
    "    ldrd r8, r9, [sp, #12]\n"
    "    smmlar r6, r6, r8, r9\n"         /* offset + rounded high word */
    "    smmlar r7, r7, r8, r9\n"
    "    ssat r6, #8, r6\n"
    "    ssat r7, #8, r7\n"
    "    \\store r6, [r3]\n"
    "    \\store r7, [r3, r11]\n"
    "    add r3, r3, r11, lsl #1\n"
    "    cmp r0, r12\n"
    "    bne 5b\n"
    "    b 1b\n"
    "    .endm\n"
    "tm_conv3_rows_m4:\n"
    "    push {r4-r11, lr}\n"
    "    sub sp, sp, #52\n"               /* the frame: the job's first 13 words (8-byte aligned stack) */
    "    ldm r0, {r1-r12}\n"
    "    stm sp, {r1-r12}\n"
    "    ldr lr, [r0, #48]\n"             /* wide: the loop that stores int16 lanes, else int8 */
    "    cmp lr, #0\n"
    "    ite eq\n"
    "    adreq lr, 3f + 1\n"
    "    adrne lr, 4f + 1\n"
    "    str lr, [sp, #48]\n"
    "    ldr r0, [r0, #52]\n"             /* channel 0's plane; r3 its output */
    "    b 2f\n"
    "1:  ldm sp, {r1-r12}\n"              /* channel, steps, the last output, -, -, rows, in_skip, span, stride, end */
    "    cmp r1, r12\n"
    "    beq 9f\n"
    "    add r0, r0, r9\n"                /* this channel's plane */
    "    sxtab r3, r3, r2\n"              /* its output: the last channel's + the step */
    "    ror r2, r2, #8\n"
    "2:  add r12, r0, r10\n"              /* the end of its input */
    "    ldr r6, [r1, r6]\n"              /* the weight words of the kernel rows in slots 0, 1, 2 */
    "    ldr r7, [r1, r7]\n"
    "    ldr r8, [r1, r8]\n"
    "    ldrd r4, lr, [r1], #20\n"        /* multiplier, bias; r1 the next channel */
    "    stm sp, {r1, r2, r3, r4}\n"      /* next channel, steps, this output, multiplier */
    "    sxtb16 r1, r6\n"                 /* ac of slot 0 */
    "    sxtb16 r2, r7\n"
    "    sxtb16 r10, r8\n"
    "    sxtb16 r4, r6, ror #8\n"         /* middle weights of slots 0 and 1 */
    "    sxtb16 r5, r8, ror #8\n"         /* and of slot 2 */
    "    ldr pc, [sp, #48]\n"
    "3:  tm_conv3_pairs strb\n"
    "4:  tm_conv3_pairs strh\n"
    "9:  add sp, sp, #52\n"
    "    pop {r4-r11, pc}\n"
    "    .purgem tm_conv3_pairs\n"
    "    .size tm_conv3_rows_m4, . - tm_conv3_rows_m4\n");
#endif
