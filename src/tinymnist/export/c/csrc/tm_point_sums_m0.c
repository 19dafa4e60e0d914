/* tm_point_sums_m0.c - tm_point_sums as a Thumb-1 routine for the Cortex-M0 (one output channel of
 * the portable 1x1 conv over a row: two pixels' sums, 2 MACs in 9 instructions, the sums and the
 * weight in registers; contract in tm_runtime.h, C specification in tm_conv1x1.c). Built on
 * Thumb-1-only cores (TM_THUMB1); elsewhere this file is empty. */
#include "tm_runtime.h"

#if TM_THUMB1 && TM_USES(TM_K_POINT)
__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_point_sums_m0, %function\n"
    "    .thumb_func\n"
    "tm_point_sums_m0:\n"                /* r0 in, r1 w, r2 cin, r3 width; [sp] sums, [sp, #4] bias */
    "    push {r4-r7, lr}\n"
    "    mov r4, r8\n"
    "    mov r5, r9\n"
    "    mov r6, r10\n"
    "    mov r7, r11\n"
    "    push {r4-r7}\n"                  /* sums now at [sp, #36], bias at [sp, #40] */
    "    ldr r4, [sp, #36]\n"
    "    mov r8, r4\n"                    /* r8: where the next sums go */
    "    mov r11, r3\n"                   /* r11: pixels left */
    "    adds r1, r1, r2\n"               /* r1: the weights' end; taps indexed from -cin up to 0 */
    "    negs r4, r2\n"
    "    mov r9, r4\n"                    /* r9: -cin */
    "    mov r10, r2\n"                   /* r10: cin */
    "    adds r0, r0, r2\n"               /* r0: the end of pixel a */
    "1:  movs r2, r0\n"                   /* r2: the end of pixel b: the next pixel, or a again */
    "    mov r4, r11\n"
    "    cmp r4, #1\n"
    "    beq 2f\n"
    "    add r2, r10\n"
    "2:  mov r4, r9\n"                    /* r4: the tap index, -cin .. -1 */
    "    ldr r3, [sp, #40]\n"             /* r3, ip: the sums of pixels a and b, from the bias */
    "    mov ip, r3\n"
    "3:  ldrsb r5, [r1, r4]\n"            /* the weight */
    "    ldrsb r6, [r0, r4]\n"            /* pixel a's input */
    "    ldrsb r7, [r2, r4]\n"            /* pixel b's */
    "    muls r6, r5\n"
    "    muls r7, r5\n"
    "    adds r3, r3, r6\n"
    "    add ip, r7\n"
    "    adds r4, r4, #1\n"
    "    bne 3b\n"
    "    mov r4, r8\n"
    "    mov r5, ip\n"
    "    stmia r4!, {r3, r5}\n"
    "    mov r8, r4\n"
    "    add r0, r10\n"                   /* the next pair */
    "    add r0, r10\n"
    "    mov r4, r11\n"
    "    subs r4, r4, #2\n"
    "    mov r11, r4\n"
    "    bgt 1b\n"
    "    pop {r4-r7}\n"
    "    mov r8, r4\n"
    "    mov r9, r5\n"
    "    mov r10, r6\n"
    "    mov r11, r7\n"
    "    pop {r4-r7, pc}\n"
    "    .size tm_point_sums_m0, . - tm_point_sums_m0\n");
#endif
