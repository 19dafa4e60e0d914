/* tm_output_row_m0.c - tm_output_row as a Thumb-1 routine for the Cortex-M0 (one output channel's
 * requantization over a row: the high word of acc * multiplier from 16-bit halves as tm_requant.c
 * proves it, rounding addend, shift, clamp and store in 31 instructions per output, 28 where the
 * shift is 0 and the clamp -128..127 (the SIMD kernels' case: saturation by one test); the
 * channel's constants in registers; contract in tm_runtime.h, C specification in tm_requant.c).
 * Built on Thumb-1-only cores (TM_THUMB1), where TM_MUL32 is 1. */
#include "tm_runtime.h"

#if TM_THUMB1 && TM_GENERAL_REQUANT
/* The routine reads the channel at these offsets. */
typedef char tm_channel_layout[offsetof(tm_channel, addend) == 8 && offsetof(tm_channel, low) == 12
                               && offsetof(tm_channel, high) == 16 && offsetof(tm_channel, round) == 20
                               && offsetof(tm_channel, shift) == 24 && offsetof(tm_channel, m_low) == 28
                               && offsetof(tm_channel, m_high) == 32 ? 1 : -1];

__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    "    .text\n"
    "    .align 2\n"
    "    .type tm_output_row_m0, %function\n"
    "    .thumb_func\n"
    "tm_output_row_m0:\n"                /* r0 sums, r1 n, r2 out, r3 stride; [sp] the channel */
    "    push {r4-r7, lr}\n"
    "    mov r4, r8\n"
    "    mov r5, r9\n"
    "    mov r6, r10\n"
    "    mov r7, r11\n"
    "    push {r4-r7}\n"
    "    ldr r7, [sp, #36]\n"             /* the channel */
    "    lsls r1, r1, #2\n"
    "    adds r1, r0, r1\n"
    "    mov lr, r1\n"                    /* lr: the end of the sums */
    "    movs r6, r2\n"                   /* r6: out */
    "    ldr r4, [r7, #12]\n"
    "    ldr r5, [r7, #24]\n"
    "    push {r3, r4, r5}\n"             /* [sp] stride, [sp, #4] low, [sp, #8] shift */
    "    ldr r4, [r7, #8]\n"
    "    mov r11, r4\n"                   /* r11: addend */
    "    ldr r4, [r7, #16]\n"
    "    mov ip, r4\n"                    /* ip: high */
    "    ldr r4, [r7, #20]\n"
    "    lsrs r4, r4, #16\n"
    "    mov r10, r4\n"                   /* r10: round >> 16 */
    "    ldr r4, [r7, #28]\n"
    "    mov r8, r4\n"                    /* r8: multiplier low half */
    "    ldr r4, [r7, #32]\n"
    "    mov r9, r4\n"                    /* r9: multiplier high half */
    "    ldr r7, [sp, #8]\n"              /* r7: shift */
    "    ldr r3, [sp, #4]\n"              /* shift 0, clamp -128..127 (the SIMD kernels' case): the fast loop */
    "    adds r3, r3, #128\n"
    "    orrs r3, r7\n"
    "    mov r4, ip\n"
    "    subs r4, r4, #127\n"
    "    orrs r3, r4\n"
    "    beq 4f\n"
    "1:  ldmia r0!, {r1}\n"               /* acc = a1 2^16 + a0 */
    "    uxth r2, r1\n"
    "    asrs r1, r1, #16\n"
    "    mov r3, r8\n"
    "    movs r4, r3\n"
    "    muls r4, r2\n"                   /* a0 m0 */
    "    lsrs r4, r4, #16\n"
    "    muls r3, r1\n"                   /* a1 m0 */
    "    adds r4, r4, r3\n"
    "    add r4, r10\n"                   /* u */
    "    mov r3, r9\n"
    "    muls r2, r3\n"                   /* a0 m1 */
    "    muls r1, r3\n"                   /* a1 m1 */
    "    uxth r5, r4\n"
    "    adds r2, r2, r5\n"               /* v */
    "    asrs r4, r4, #16\n"
    "    asrs r2, r2, #16\n"
    "    adds r1, r1, r4\n"
    "    adds r1, r1, r2\n"               /* the high word */
    "    add r1, r11\n"
    "    asrs r1, r7\n"
    "    ldr r3, [sp, #4]\n"
    "    cmp r1, r3\n"
    "    bge 2f\n"
    "    movs r1, r3\n"
    "2:  cmp r1, ip\n"
    "    ble 3f\n"
    "    mov r1, ip\n"
    "3:  strb r1, [r6]\n"
    "    ldr r3, [sp]\n"
    "    adds r6, r6, r3\n"
    "    cmp r0, lr\n"
    "    bne 1b\n"
    "    b 7f\n"
    "4:  ldr r7, [sp]\n"                  /* r7: stride */
    "5:  ldmia r0!, {r1}\n"               /* the same high word */
    "    uxth r2, r1\n"
    "    asrs r1, r1, #16\n"
    "    mov r3, r8\n"
    "    movs r4, r3\n"
    "    muls r4, r2\n"
    "    lsrs r4, r4, #16\n"
    "    muls r3, r1\n"
    "    adds r4, r4, r3\n"
    "    add r4, r10\n"
    "    mov r3, r9\n"
    "    muls r2, r3\n"
    "    muls r1, r3\n"
    "    uxth r5, r4\n"
    "    adds r2, r2, r5\n"
    "    asrs r4, r4, #16\n"
    "    asrs r2, r2, #16\n"
    "    adds r1, r1, r4\n"
    "    adds r1, r1, r2\n"
    "    add r1, r11\n"                   /* + offset */
    "    movs r3, r1\n"                   /* in -128..127: (v + 128) >> 8 == 0 */
    "    adds r3, #128\n"
    "    lsrs r3, r3, #8\n"
    "    bne 6f\n"
    "3:  strb r1, [r6]\n"
    "    adds r6, r6, r7\n"
    "    cmp r0, lr\n"
    "    bne 5b\n"
    "7:  add sp, #12\n"
    "    pop {r4-r7}\n"
    "    mov r8, r4\n"
    "    mov r9, r5\n"
    "    mov r10, r6\n"
    "    mov r11, r7\n"
    "    pop {r4-r7, pc}\n"
    "6:  asrs r1, r1, #31\n"              /* saturated: 0 or -1, to 127 or -128 */
    "    movs r3, #127\n"
    "    eors r1, r3\n"
    "    b 3b\n"
    "    .size tm_output_row_m0, . - tm_output_row_m0\n");
#endif
