/* tm_point_pairs_m4.c - tm_point_pairs as a Thumb-2 routine for the Cortex-M4 (the SIMD 1x1 conv's
 * pixel-pair loop: 16 MACs in 14 instructions; contract and job layout in tm_runtime.h, C
 * specification in tm_conv1x1_lanes.c). Built where the DSP extension is (TM_THUMB2). */
#include "tm_runtime.h"

#if TM_THUMB2
/* The routine reads the job at these offsets (32-bit pointers). */
typedef char tm_pair_job_layout[offsetof(tm_pair_job, next) == 8 && offsetof(tm_pair_job, multiplier_a) == 20
                                && offsetof(tm_pair_job, out) == 36 && offsetof(tm_pair_job, pairs) == 52
                                && offsetof(tm_pair_job, in) == 56 ? 1 : -1];

__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_point_pairs_m4, %function\n"
    "    .thumb_func\n"
    "tm_point_pairs_m4:\n"
    "    push {r0, r4-r11, lr}\n"          /* the job stays at [sp] */
    "    ldr r0, [r0, #56]\n"              /* r0: pixel a's input lanes */
    "1:  ldr r4, [sp]\n"
    "    ldm r4, {r2, r3, r5, r10, r12}\n" /* weights, their end, next, bias a, bias b */
    "    add r1, r0, r5\n"                 /* r1: pixel b's input lanes */
    "    mov r11, r10\n"                   /* r10, r11: channel a, pixels a and b */
    "    mov lr, r12\n"                    /* r12, lr:  channel b, pixels a and b */
    "2:  ldrd r4, r5, [r0], #8\n"          /* four channels of pixel a: (c0, c2), (c1, c3) */
    "    ldrd r8, r9, [r1], #8\n"          /* and of pixel b */
    "    ldrd r6, r7, [r2], #8\n"          /* channel a's weights: even, odd lanes */
    "    smlad r10, r4, r6, r10\n"
    "    smlad r10, r5, r7, r10\n"
    "    smlad r11, r8, r6, r11\n"
    "    smlad r11, r9, r7, r11\n"
    "    ldrd r6, r7, [r2], #8\n"          /* channel b's */
    "    smlad r12, r4, r6, r12\n"
    "    smlad r12, r5, r7, r12\n"
    "    smlad lr, r8, r6, lr\n"
    "    smlad lr, r9, r7, lr\n"
    "    cmp r2, r3\n"
    "    bne 2b\n"
    "    ldr r9, [sp]\n"
    "    ldr r1, [r9, #8]\n"
    "    add r0, r0, r1\n"                 /* the next pair's pixel a */
    "    add r9, r9, #20\n"
    "    ldm r9!, {r4, r5, r6, r7}\n"      /* multiplier and offset of a, of b: offset + rounded high word */
    "    smmlar r10, r10, r4, r5\n"
    "    ssat r10, #8, r10\n"
    "    smmlar r11, r11, r4, r5\n"
    "    ssat r11, #8, r11\n"
    "    smmlar r12, r12, r6, r7\n"
    "    ssat r12, #8, r12\n"
    "    smmlar lr, lr, r6, r7\n"
    "    ssat lr, #8, lr\n"
    "    ldm r9, {r1, r2, r3, r4, r5}\n"   /* out, next_out, ob, out_step, pairs */
    "    strb r10, [r1]\n"
    "    strb r12, [r1, r3]\n"
    "    add r8, r1, r2\n"
    "    strb r11, [r8]\n"
    "    strb lr, [r8, r3]\n"
    "    add r1, r1, r4\n"
    "    str r1, [r9]\n"
    "    subs r5, r5, #1\n"
    "    str r5, [r9, #16]\n"
    "    bne 1b\n"
    "    pop {r0, r4-r11, pc}\n"
    "    .size tm_point_pairs_m4, . - tm_point_pairs_m4\n");
#endif
