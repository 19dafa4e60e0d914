/* tm_shortcut.c - a residual block's identity shortcut inside the layer of its body: an output row
 * plus the same row of the layer's input, read from the ring slot that still holds it, in the
 * layout the layer's 3x3 part reads (interleaved, planar, or planar offset by 128). Contract in
 * tm_runtime.h (tm_shortcut). One loop for every build, a byte at a time (with the DSP extension
 * the saturation is one SSAT: ten instructions per output on a Cortex-M4): the planar rows hold a
 * channel's pixels side by side and the output a pixel's channels, so four-lane arithmetic would
 * first need a transpose. */
#include "tm_runtime.h"

#if TM_USES(TM_K_SHORTCUT)
/* n outputs `stride` bytes apart from out, each plus its input: n consecutive bytes from in, int8
 * q, or (biased) uint8 q + 128, with an addend 128 * mb lower to match. */
static TM_INLINE void tm_shortcut_bytes(int8_t *out, int stride, const int8_t *in, int n, int32_t addend,
                                        const tm_shortcut *s, int biased)
{
    const int8_t *end = in + n;
    int32_t ma = s->ma, mb = s->mb; /* locals: the stores through out could alias *s */
    int shift = s->shift;
    do {
        int32_t b = biased ? (int32_t)*(const uint8_t *)in : (int32_t)*in;
        int32_t v = addend + *out * ma;
        v = (v + b * mb) >> shift;
#if TM_SIMD
        *out = (int8_t)tm_ssat8(v);
#else
        v = v < -128 ? -128 : v;
        *out = (int8_t)(v > 127 ? 127 : v);
#endif
        out += stride;
    } while (++in != end);
}

#if TM_USES(TM_K_ROWS | TM_K_PLANAR3)
TM_NOINLINE static void tm_shortcut_signed(int8_t *out, int stride, const int8_t *in, int n, const tm_shortcut *s)
{
    tm_shortcut_bytes(out, stride, in, n, s->addend, s, 0);
}
#endif

#if TM_USES(TM_K_SINGLE3)
TM_NOINLINE static void tm_shortcut_biased(int8_t *out, int stride, const int8_t *in, int n, const tm_shortcut *s)
{
    tm_shortcut_bytes(out, stride, in, n, s->addend - 128 * s->mb, s, 1);
}
#endif

/* The ring's layout is read again from the descriptor, as tm_run_layer chose it (a body's 3x3 part
 * has more than one input channel), rather than passed: two more arguments live across
 * tm_run_layer's row loop made GCC -Os spill the dense 3x3 kernel's pointers there. */
TM_NOINLINE TM_PRIVATE void tm_shortcut_row(const tm_layer *L, int8_t *out, int y)
{
    const int8_t *slot = tm_slot(y);
    int channels = L->channels, width = L->width, c;
    int layout = L->conv_depthwise ? TM_ROWS_BIASED : TM_ROWS_INTERLEAVED;
    int plane = width + 2 * L->padding; /* bytes per channel of a planar slot */
#if TM_SIMD && TM_USES(TM_K_PLANAR3)
    if (L->conv_planar) {
        layout = TM_ROWS_PLANAR;
        plane = tm_plane_bytes(plane);
    }
#endif
#if TM_USES(TM_K_ROWS)
    if (layout == TM_ROWS_INTERLEAVED) { /* [padded_width][channels]: past the padding, the output's order */
        tm_shortcut_signed(out, 1, slot + L->padding * channels, width * channels, &L->shortcut);
        return;
    }
#endif
    for (c = 0; c < channels; c++) { /* planar: channel c's padded row at slot + c * plane */
        const int8_t *in = slot + c * plane + L->padding;
#if TM_USES(TM_K_SINGLE3)
        if (layout == TM_ROWS_BIASED) {
            tm_shortcut_biased(out + c, channels, in, width, &L->shortcut);
            continue;
        }
#endif
#if TM_USES(TM_K_PLANAR3)
        tm_shortcut_signed(out + c, channels, in, width, &L->shortcut);
#endif
        (void)in;
    }
    (void)layout;
}
#endif
