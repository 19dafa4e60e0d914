/* tm_conv3_rows_m4.c - tm_conv3_rows as a Thumb-2 routine for the Cortex-M4 (the planar 3x3 conv's
 * loop over channels and pixel pairs: 31 instructions per output pair, 22 per channel; contract
 * and job layout in tm_runtime.h, C specification in tm_conv3x3_planar.c). The ring slots are read
 * at immediate offsets (TM_SLOT, 2 * TM_SLOT), so it is built only where those fit
 * (TM_THUMB2_CONV3).
 *
 * A channel's set-up derives nothing that could be made once per row: the job, copied to the stack
 * as the routine's frame and reloaded with one LDM, holds the offsets of the rotated kernel rows,
 * the skip from one input plane to the next and the output steps. Three LDRs fetch the rows'
 * weight words (unaligned: four bytes at 3k, as the pixel loop reads its input), one LDRD the
 * channel's bias and multiplier, stepping to the next channel's; six SXTB16 and a PKHBT unpack
 * the weights into the loop's registers. The input pointer runs on from where the pixel loop left
 * it, the output from the channel's stored start; one STM stores what changed. */
#include "tm_runtime.h"

#if TM_THUMB2_CONV3
/* The routine reads the job at these offsets (32-bit pointers). */
typedef char tm_conv3_job_layout[offsetof(tm_conv3_job, steps) == 8 && offsetof(tm_conv3_job, multiplier) == 16
                                 && offsetof(tm_conv3_job, row0) == 24 && offsetof(tm_conv3_job, stride) == 40
                                 && offsetof(tm_conv3_job, span) == 48 && offsetof(tm_conv3_job, in) == 56 ? 1 : -1];

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
     * of slots 0..2, r5 the middle weights of slots 0 (bottom) and 1 (top), r3 that of slot 2
     * (bottom), lr the bias, r4 the output, r11 its stride, r12 the end of the input; [sp, #16]
     * the multiplier and the offset. */
    "    .macro tm_conv3_pairs store\n"
    "5:  ldr r9, [r0, #" TM_STR(TM_SLOT) "]\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r2, lr\n"
    "    smlabt r6, r9, r5, r6\n"
    "    smlad r7, r9, r2, lr\n"
    "    smlatt r7, r8, r5, r7\n"
    "    ldr r9, [r0, #(2 * " TM_STR(TM_SLOT) ")]\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r10, r6\n"
    "    smlabb r6, r9, r3, r6\n"
    "    smlad r7, r9, r10, r7\n"
    "    smlatb r7, r8, r3, r7\n"
    "    ldr r9, [r0], #2\n"
    "    sxtb16 r8, r9\n"
    "    sxtb16 r9, r9, ror #8\n"
    "    smlad r6, r8, r1, r6\n"
    "    smlabb r6, r9, r5, r6\n"
    "    smlad r7, r9, r1, r7\n"
    "    smlatb r7, r8, r5, r7\n"
    "    ldrd r8, r9, [sp, #16]\n"
    "    smmlar r6, r6, r8, r9\n"         /* offset + rounded high word */
    "    smmlar r7, r7, r8, r9\n"
    "    ssat r6, #8, r6\n"
    "    ssat r7, #8, r7\n"
    "    \\store r6, [r4]\n"
    "    \\store r7, [r4, r11]\n"
    "    add r4, r4, r11, lsl #1\n"
    "    cmp r0, r12\n"
    "    bne 5b\n"
    "    b 1b\n"
    "    .endm\n"
    "tm_conv3_rows_m4:\n"
    "    push {r4-r11, lr}\n"
    "    sub sp, sp, #60\n"               /* the frame: the job's first 13 words, the loop's address (8-byte aligned) */
    "    ldm r0, {r1-r12, lr}\n"
    "    stm sp, {r1-r12, lr}\n"
    "    ldr lr, [r0, #52]\n"             /* wide: the loop that stores int16 lanes, else int8 */
    "    cmp lr, #0\n"
    "    ite eq\n"
    "    adreq lr, 3f + 1\n"
    "    adrne lr, 4f + 1\n"
    "    str lr, [sp, #52]\n"
    "    ldr lr, [sp, #48]\n"             /* span */
    "    ldr r0, [r0, #56]\n"             /* channel 0's plane; r4 its output */
    "    b 2f\n"
    "1:  ldm sp, {r1-r12, lr}\n"          /* scale, w, steps, the last output, -, -, rows, in_skip, stride, end, span */
    "    cmp r1, r12\n"
    "    beq 9f\n"
    "    add r0, r0, r10\n"               /* this channel's plane */
    "    sxtab r4, r4, r3\n"              /* its output: the last channel's + the step */
    "    ror r3, r3, #8\n"
    "2:  add r12, r0, lr\n"               /* the end of its input */
    "    ldr r7, [r2, r7]\n"              /* the words of the kernel rows in slots 0, 1, 2 */
    "    ldr r8, [r2, r8]\n"
    "    ldr r9, [r2, r9]\n"
    "    add r2, r2, #9\n"
    "    ldrd lr, r5, [r1], #8\n"         /* bias, multiplier */
    "    stm sp, {r1, r2, r3, r4, r5}\n"  /* the next channel's scale and w, steps, this output, multiplier */
    "    sxtb16 r1, r7\n"                 /* ac of slots 0, 1, 2 */
    "    sxtb16 r2, r8\n"
    "    sxtb16 r10, r9\n"
    "    sxtb16 r7, r7, ror #8\n"         /* middle weights (bottom lanes) */
    "    sxtb16 r8, r8, ror #8\n"
    "    sxtb16 r3, r9, ror #8\n"
    "    pkhbt r5, r7, r8, lsl #16\n"     /* those of slots 0 and 1 in one word */
    "    ldr pc, [sp, #52]\n"
    "3:  tm_conv3_pairs strb\n"
    "4:  tm_conv3_pairs strh\n"
    "9:  add sp, sp, #60\n"
    "    pop {r4-r11, pc}\n"
    "    .purgem tm_conv3_pairs\n"
    "    .size tm_conv3_rows_m4, . - tm_conv3_rows_m4\n");
#endif
