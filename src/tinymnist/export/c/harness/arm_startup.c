/* Minimal Cortex-M startup for the QEMU test image: vector table, copy .data, zero .bss, main. */
#include <stdint.h>

extern uint32_t _data_start[], _data_end[], _data_load[], _bss_start[], _bss_end[], _stack_top[];
int main(void);
void tm_exit(int code);
void tm_reset(void);

static void tm_fault(void)
{
    tm_exit(99);
}

__attribute__((section(".vectors"), used)) static void (*const tm_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)_stack_top, tm_reset, tm_fault, tm_fault, tm_fault, tm_fault, tm_fault,
    0, 0, 0, 0, tm_fault, tm_fault, 0, tm_fault, tm_fault,
};

void tm_reset(void)
{
    uint32_t *src = _data_load, *dst = _data_start;
    while (dst < _data_end) {
        *dst++ = *src++;
    }
    for (dst = _bss_start; dst < _bss_end; dst++) {
        *dst = 0;
    }
    tm_exit(main());
}
