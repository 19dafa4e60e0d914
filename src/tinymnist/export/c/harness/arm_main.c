/* Bare-metal test driver for the MPS2 boards under QEMU (semihosting for files, no C library).
 *
 * Reads images.bin (N x 784 bytes) from QEMU's working directory; for each image writes to
 * scores.bin: TINYMNIST_CLASSES int32 scores, then the SysTick ticks tinymnist_scores took and the
 * deepest stack it used (bytes, from a painted stack). Under `-icount shift=0` one instruction is
 * one nanosecond of virtual time and SysTick counts the 25 MHz core clock, so ticks x 40 =
 * instructions (the harness also times an empty call, to subtract its own overhead). */
#include <stdint.h>

#include "tinymnist_model.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

extern uint32_t _stack_bottom[];

static int semihost(int op, void *args)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = args;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static int sh_open(const char *name, int mode)
{
    uintptr_t args[3];
    int len = 0;
    while (name[len]) {
        len++;
    }
    args[0] = (uintptr_t)name;
    args[1] = (uintptr_t)mode; /* 1 = "rb", 5 = "wb" */
    args[2] = (uintptr_t)len;
    return semihost(0x01, args);
}

static int sh_read(int fd, void *buf, int n) /* returns bytes NOT read */
{
    uintptr_t args[3];
    args[0] = (uintptr_t)fd;
    args[1] = (uintptr_t)buf;
    args[2] = (uintptr_t)n;
    return semihost(0x06, args);
}

static int sh_write(int fd, const void *buf, int n)
{
    uintptr_t args[3];
    args[0] = (uintptr_t)fd;
    args[1] = (uintptr_t)buf;
    args[2] = (uintptr_t)n;
    return semihost(0x05, args);
}

void tm_exit(int code)
{
    uintptr_t args[2];
    args[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
    args[1] = (uintptr_t)code;
    semihost(0x20, args); /* SYS_EXIT_EXTENDED */
    semihost(0x18, (void *)args[0]);
    for (;;) {
    }
}

static uint32_t ticks_of(void (*fn)(const uint8_t *, int32_t *), const uint8_t *image, int32_t *scores)
{
    uint32_t start, end;
    SYST_CVR = 0;
    start = SYST_CVR;
    fn(image, scores);
    end = SYST_CVR;
    return (start - end) & 0xFFFFFFu; /* SysTick counts down */
}

static void empty(const uint8_t *image, int32_t *scores)
{
    (void)image;
    (void)scores;
}

/* Fill the unused stack below the current frame with a pattern; return how deep it was written. */
static void paint_stack(void)
{
    volatile uint32_t *p = _stack_bottom;
    uint32_t here;
    while ((uintptr_t)p < (uintptr_t)&here - 256) {
        *p++ = 0xDEADBEEFu;
    }
}

static uint32_t stack_used(void)
{
    uint32_t *p = _stack_bottom;
    uint32_t here;
    while (*p == 0xDEADBEEFu) {
        p++;
    }
    return (uint32_t)((uintptr_t)&here - (uintptr_t)p);
}

static uint8_t image[784];

int main(void)
{
    int32_t record[TINYMNIST_CLASSES + 3];
    int in = sh_open("images.bin", 1), out = sh_open("scores.bin", 5);
    if (in < 0 || out < 0) {
        return 2;
    }
    SYST_RVR = 0xFFFFFFu;
    SYST_CSR = 5u; /* enabled, core clock, no interrupt */
    while (sh_read(in, image, (int)sizeof image) == 0) {
        uint32_t base;
        paint_stack();
        base = stack_used();
        record[TINYMNIST_CLASSES] = (int32_t)ticks_of(tinymnist_scores, image, record);
        record[TINYMNIST_CLASSES + 1] = (int32_t)ticks_of(empty, image, record + TINYMNIST_CLASSES + 2);
        record[TINYMNIST_CLASSES + 2] = (int32_t)(stack_used() - base);
        tinymnist_scores(image, record); /* the scores again: the timed call's are overwritten above */
        if (sh_write(out, record, (int)sizeof record) != 0) {
            return 3;
        }
    }
    return 0;
}
