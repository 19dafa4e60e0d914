/* tm_point_quads_m4.c - tm_point_quads as a Thumb-2 routine for the Cortex-M4 (the SIMD 1x1 conv:
 * four output channels' weights split into int16 lanes, then per pixel 16 MACs in 13
 * instructions and 23 to requantize and store the four outputs; contract and job layout in
 * tm_runtime.h, C specification in tm_conv1x1_lanes.c). Built where the DSP extension is
 * (TM_THUMB2). */
#include "tm_runtime.h"

#if TM_THUMB2 && TM_USES(TM_K_LANES)
/* The routine reads the job at these offsets (32-bit pointers). */
typedef char tm_quad_job_layout[offsetof(tm_quad_job, scale) == 16 && offsetof(tm_quad_job, in) == 48
                                && offsetof(tm_quad_job, out) == 56 && offsetof(tm_quad_job, weight) == 64
                                && offsetof(tm_quad_job, lanes) == 72 ? 1 : -1];

__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_point_quads_m4, %function\n"
    "    .thumb_func\n"
    "tm_point_quads_m4:\n"
    "    push {r4-r11, lr}\n"
    "    mov lr, r0\n"                     /* lr: the job, throughout */
    "    ldrd r1, r2, [lr, #64]\n"         /* weights of channel o, cin */
    "    add r3, lr, #72\n"                /* the lanes */
    "    add r0, r3, r2, lsl #3\n"         /* their end: 8 bytes per input channel */
    "1:  ldr r4, [r1]\n"                   /* input channels c..c+3 of channel o */
    "    ldr r5, [r1, r2]\n"               /* of o + 1 */
    "    add r12, r1, r2, lsl #1\n"
    "    ldr r6, [r12]\n"                  /* of o + 2 */
    "    ldr r7, [r12, r2]\n"              /* of o + 3 */
    "    sxtb16 r8, r4\n"
    "    sxtb16 r9, r4, ror #8\n"
    "    sxtb16 r10, r5\n"
    "    sxtb16 r11, r5, ror #8\n"
    "    stmia r3!, {r8-r11}\n"
    "    sxtb16 r8, r6\n"
    "    sxtb16 r9, r6, ror #8\n"
    "    sxtb16 r10, r7\n"
    "    sxtb16 r11, r7, ror #8\n"
    "    stmia r3!, {r8-r11}\n"
    "    adds r1, r1, #4\n"
    "    cmp r3, r0\n"
    "    bne 1b\n"
    "    mov r2, r0\n"                     /* r2: the end of the lanes */
    "    ldr r0, [lr, #48]\n"              /* r0: the pixel's input lanes */
    "2:  ldm lr, {r9-r12}\n"               /* the four sums start at the biases */
    "    add r1, lr, #72\n"
    "3:  ldrd r3, r4, [r0], #8\n"          /* four input channels: (c0, c2), (c1, c3) */
    "    ldm r1!, {r5-r8}\n"               /* channels o, o + 1: even, odd lanes */
    "    smlad r9, r3, r5, r9\n"
    "    smlad r9, r4, r6, r9\n"
    "    smlad r10, r3, r7, r10\n"
    "    smlad r10, r4, r8, r10\n"
    "    ldm r1!, {r5-r8}\n"               /* channels o + 2, o + 3 */
    "    smlad r11, r3, r5, r11\n"
    "    smlad r11, r4, r6, r11\n"
    "    smlad r12, r3, r7, r12\n"
    "    smlad r12, r4, r8, r12\n"
    "    cmp r1, r2\n"
    "    bne 3b\n"
    "    add r1, lr, #16\n"
    "    ldm r1!, {r5-r8}\n"               /* multiplier and offset of o, of o + 1 */
    "    smmlar r9, r9, r5, r6\n"          /* offset + rounded high word */
    "    smmlar r10, r10, r7, r8\n"
    "    ldm r1, {r5-r8}\n"                /* of o + 2, of o + 3 */
    "    smmlar r11, r11, r5, r6\n"
    "    smmlar r12, r12, r7, r8\n"
    "    ssat r9, #8, r9\n"
    "    ssat r10, #8, r10\n"
    "    ssat r11, #8, r11\n"
    "    ssat r12, #8, r12\n"
    "    ldrd r3, r4, [lr, #56]\n"         /* out, cout */
    "    strb r9, [r3]\n"
    "    strb r10, [r3, #1]\n"
    "    strb r11, [r3, #2]\n"
    "    strb r12, [r3, #3]\n"
    "    add r3, r3, r4\n"
    "    str r3, [lr, #56]\n"
    "    ldr r4, [lr, #52]\n"              /* the end of the row */
    "    cmp r0, r4\n"
    "    bne 2b\n"
    "    pop {r4-r11, pc}\n"
    "    .size tm_point_quads_m4, . - tm_point_quads_m4\n");
#endif
