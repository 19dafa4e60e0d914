/* tm_layer.c - one conv layer in place in the arena: the row loop (top-down or bottom-up), the
 * ring fills, the choice of kernel for each part (the SIMD ones where the layer fits them, else
 * the portable ones; only the kernels the model uses are compiled, TM_USES), a residual block's
 * shortcut and the fused max-pool. Contract in tm_runtime.h. */
#include "tm_runtime.h"

TM_PRIVATE void tm_run_layer(const tm_layer *L)
{
    int has_conv = L->conv_weight != NULL;
    int kernel = has_conv ? 3 : 1;
    int pad = has_conv ? L->padding : 0;
    int out_height = L->height + 2 * pad - kernel + 1;
    int out_width = L->width + 2 * pad - kernel + 1;
    int cin = L->channels;
    int single = has_conv && (L->conv_depthwise || cin == 1); /* one input channel per output */
    int mid_channels = has_conv ? L->conv_out : cin;
    int out_channels = L->point_weight ? L->point_out : mid_channels;
    int padded_width = L->width + 2 * pad;
    int layout = single ? TM_ROWS_BIASED : TM_ROWS_INTERLEAVED;
    /* The SIMD 3x3 kernel on planar ring rows where the generator chose it (conv_planar; it also
     * checked that an odd width's extra pixel has room, which only tm_mid has). */
    int plane = 0;
    /* Both SIMD kernels of a separable layer: the depthwise row goes to tm_mid as int16 lanes (the
     * 1x1 kernel takes input channels in fours and output channels four at a time). */
    int lanes = 0;
    int out_row_bytes = out_width * out_channels;
    int rows = L->pool ? out_height & ~1 : out_height; /* the pool drops an odd last row: never computed */
    int step = L->bottom_up ? -1 : 1;
    int y = L->bottom_up ? rows - 1 : 0;
    int n;
#if TM_SIMD && TM_USES(TM_K_PLANAR3)
    if (L->conv_planar) {
        plane = tm_plane_bytes(padded_width);
        layout = TM_ROWS_PLANAR;
        lanes = L->point_weight && L->point_q.simple && mid_channels % 4 == 0 && L->point_out >= 4;
    }
#endif
    /* The window's other rows, before the loop loads one new row per output row. */
    for (n = 1; n < kernel; n++) {
        tm_fetch_row(L, L->bottom_up ? y - pad + n : y - pad + n - 1, padded_width, layout);
    }
    for (n = 0; n < rows; n++, y += step) {
#if TM_USES(TM_K_POOLED)
        int8_t *out = L->pool ? tm_pool + (y & 1) * out_row_bytes : tm_arena + y * out_row_bytes;
#else
        int8_t *out = tm_arena + y * out_row_bytes;
#endif
        int8_t *conv_out = L->point_weight ? (int8_t *)tm_mid.h : out;
        tm_fetch_row(L, L->bottom_up ? y - pad : y - pad + kernel - 1, padded_width, layout);
        if (has_conv) {
            const int8_t *r0 = tm_slot(y - pad), *r1 = tm_slot(y - pad + 1), *r2 = tm_slot(y - pad + 2);
            (void)r0, (void)r1, (void)r2, (void)single, (void)conv_out;
#if TM_SIMD && TM_USES(TM_K_PLANAR3)
            if (plane) {
                tm_conv3_row_simd(L, y, plane, conv_out, out_width, lanes, mid_channels);
            } else
#endif
#if TM_USES(TM_K_SINGLE3)
            if (single) {
                tm_conv3_single_row((const uint8_t *)r0, (const uint8_t *)r1, (const uint8_t *)r2, padded_width, conv_out,
                                    out_width, L->conv_out, L->conv_depthwise ? 1 : 0, L->conv_weight, &L->conv_q);
            } else
#endif
            {
#if TM_USES(TM_K_DENSE3)
                tm_conv3_dense_row(r0, r1, r2, conv_out, out_width, cin, L->conv_out, L->conv_weight, &L->conv_q);
#endif
            }
        }
        if (L->point_weight) {
#if TM_SIMD && TM_USES(TM_K_LANES)
            if (lanes) {
                tm_point_row_simd(tm_mid.h, out, out_width, mid_channels, L->point_out, L->point_weight, &L->point_q);
            } else
#endif
            {
#if TM_USES(TM_K_POINT)
                const int8_t *in = has_conv ? (const int8_t *)tm_mid.h : tm_slot(y);
                tm_point_row(in, out, out_width, mid_channels, L->point_out, L->point_weight, &L->point_q);
#endif
            }
        }
#if TM_USES(TM_K_SHORTCUT)
        if (L->shortcut.shift) { /* input row y is in the ring: the window of output row y holds it */
            tm_shortcut_row(L, out, y);
        }
#endif
#if TM_USES(TM_K_POOLED)
        if (L->pool && n & 1) { /* both rows of a pair made: pooled row y / 2 to the arena */
            tm_pool_rows(tm_pool, tm_pool + out_row_bytes, tm_arena + (y >> 1) * (out_width >> 1) * out_channels,
                         out_width, out_channels);
        }
#endif
    }
    (void)lanes, (void)out_channels, (void)plane;
}
