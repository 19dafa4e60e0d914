/* tinymnist_wasm.c - the WebAssembly interface of a generated model (tinymnist_model.c).
 *
 * The module imports nothing and exports its memory and three functions:
 *   tinymnist_input()   the address of a 784-byte image buffer: 28x28, row-major, as stored in the
 *                       MNIST IDX files (0 = background, 255 = ink); JavaScript writes it in place
 *   tinymnist_output()  the address of TINYMNIST_CLASSES int32 scores (little-endian, as wasm is)
 *   tinymnist_run()     scores the image in the input buffer into the output, returns the digit
 * Static buffers rather than arguments: JavaScript then needs no allocator in the module, and the
 * two addresses stay valid for the module's life (the memory never grows).
 */
#include <stddef.h>
#include <stdint.h>

#include "tinymnist_model.h"

#define TINYMNIST_EXPORT(name) __attribute__((export_name(#name)))

static uint8_t input[784];
static int32_t output[TINYMNIST_CLASSES];

TINYMNIST_EXPORT(tinymnist_input) uint8_t *tinymnist_input(void)
{
    return input;
}

TINYMNIST_EXPORT(tinymnist_output) int32_t *tinymnist_output(void)
{
    return output;
}

TINYMNIST_EXPORT(tinymnist_run) int tinymnist_run(void)
{
    int k, best = 0;
    tinymnist_scores(input, output);
    for (k = 1; k < TINYMNIST_CLASSES; k++) {
        if (output[k] > output[best]) {
            best = k;
        }
    }
    return best;
}

/* Without a C library, the compiler's own calls for block copies and clears land here (a struct or
 * array copy, a zeroing loop it recognises); wasm's bulk-memory instructions would do the same but
 * are a feature some browsers lack. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);

void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--) {
            *d++ = *s++;
        }
    } else {
        while (n--) {
            d[n] = s[n];
        }
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--) {
        *d++ = (uint8_t)c;
    }
    return dst;
}
