/* tm_plane_blocks_m4.c - tm_plane_blocks as a Thumb-2 routine for the Cortex-M4 (the 4 x 4 byte
 * transposes of a planar row load; contract in tm_runtime.h, C specification in tm_rows.c).
 * Built where the DSP extension is (TM_THUMB2); elsewhere this file is empty. */
#include "tm_runtime.h"

#if TM_THUMB2 && TM_USES(TM_K_PLANAR3)
__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_plane_blocks_m4, %function\n"
    "    .thumb_func\n"
    "tm_plane_blocks_m4:\n"               /* r0 src, r1 dst, r2 channels, r3 plane; blocks at [sp] */
    "    push {r4-r11, lr}\n"              /* blocks now at [sp, #36] */
    "1:  add lr, r0, r2\n"                 /* the end of pixel 0's channels */
    "    add r10, r0, r2, lsl #1\n"        /* pixels 2 and 3 */
    "    mov r11, r1\n"                    /* planes c, c + 1 */
    "    add r12, r1, r3, lsl #1\n"        /* planes c + 2, c + 3 */
    "2:  ldr r5, [r0, r2]\n"               /* b: pixel 1, channels c..c+3 */
    "    ldr r4, [r0], #4\n"               /* a: pixel 0 */
    "    ldr r7, [r10, r2]\n"              /* h: pixel 3 */
    "    ldr r6, [r10], #4\n"              /* g: pixel 2 */
    "    uxtb16 r8, r4\n"
    "    uxtb16 r9, r5\n"
    "    orr r8, r8, r9, lsl #8\n"         /* (a0 b0 a2 b2) */
    "    uxtb16 r4, r4, ror #8\n"
    "    uxtb16 r5, r5, ror #8\n"
    "    orr r4, r4, r5, lsl #8\n"         /* (a1 b1 a3 b3) */
    "    uxtb16 r9, r6\n"
    "    uxtb16 r5, r7\n"
    "    orr r9, r9, r5, lsl #8\n"         /* (g0 h0 g2 h2) */
    "    uxtb16 r6, r6, ror #8\n"
    "    uxtb16 r7, r7, ror #8\n"
    "    orr r6, r6, r7, lsl #8\n"         /* (g1 h1 g3 h3) */
    "    pkhbt r5, r8, r9, lsl #16\n"      /* channel c:     (a0 b0 g0 h0) */
    "    pkhtb r8, r9, r8, asr #16\n"      /* channel c + 2: (a2 b2 g2 h2) */
    "    pkhbt r7, r4, r6, lsl #16\n"      /* channel c + 1 */
    "    pkhtb r4, r6, r4, asr #16\n"      /* channel c + 3 */
    "    str r5, [r11]\n"
    "    str r7, [r11, r3]\n"
    "    str r8, [r12]\n"
    "    str r4, [r12, r3]\n"
    "    add r11, r11, r3, lsl #2\n"
    "    add r12, r12, r3, lsl #2\n"
    "    cmp r0, lr\n"
    "    bne 2b\n"
    "    add r0, r0, r2, lsl #1\n"         /* the next four pixels: r0 is at pixel 1 */
    "    add r0, r0, r2\n"
    "    add r1, r1, #4\n"
    "    ldr r4, [sp, #36]\n"
    "    subs r4, r4, #1\n"
    "    str r4, [sp, #36]\n"
    "    bne 1b\n"
    "    pop {r4-r11, pc}\n"
    "    .size tm_plane_blocks_m4, . - tm_plane_blocks_m4\n");
#endif
