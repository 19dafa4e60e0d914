/* tm_layer.c - one conv layer in place in the arena: the row loop (top-down or bottom-up), the
 * ring fills, and the choice of kernel for each part (the SIMD ones where the layer fits them,
 * else the portable ones). Contract in tm_runtime.h. */
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
    /* The SIMD 3x3 kernel (planar ring rows) computes pixel pairs: an odd width writes a pixel
     * past the row, which only tm_mid has room for. */
    int plane = TM_SIMD && single && L->conv_q.simple && (L->point_weight || out_width % 2 == 0)
              ? tm_plane_bytes(padded_width) : 0;
    /* Both SIMD kernels of a separable layer: the depthwise row goes to tm_mid as int16 lanes (the
     * 1x1 kernel takes input channels in fours and output channels four at a time). */
    int lanes = plane && L->point_weight && L->point_q.simple && mid_channels % 4 == 0 && L->point_out >= 4;
    int out_row_bytes = out_width * out_channels;
    int step = L->bottom_up ? -1 : 1;
    int y = L->bottom_up ? out_height - 1 : 0;
    int n;
    /* The window's other rows, before the loop loads one new row per output row. */
    for (n = 1; n < kernel; n++) {
        tm_fetch_row(L, L->bottom_up ? y - pad + n : y - pad + n - 1, padded_width, plane);
    }
    for (n = 0; n < out_height; n++, y += step) {
        int8_t *out = tm_arena + y * out_row_bytes;
        int8_t *conv_out = L->point_weight ? (int8_t *)tm_mid.h : out;
        tm_fetch_row(L, L->bottom_up ? y - pad : y - pad + kernel - 1, padded_width, plane);
        if (has_conv) {
            const int8_t *r0 = tm_slot(y - pad), *r1 = tm_slot(y - pad + 1), *r2 = tm_slot(y - pad + 2);
#if TM_SIMD
            if (plane) {
                tm_conv3_row_simd(L, y, plane, conv_out, out_width, lanes, mid_channels);
            } else
#endif
            if (single) {
                tm_conv3_single_row(r0, r1, r2, conv_out, out_width, cin, L->conv_out, L->conv_depthwise ? 1 : 0,
                                    L->conv_weight, &L->conv_q);
            } else {
                tm_conv3_dense_row(r0, r1, r2, conv_out, out_width, cin, L->conv_out, L->conv_weight, &L->conv_q);
            }
        }
        if (L->point_weight) {
            const int8_t *in = has_conv ? (const int8_t *)tm_mid.h : tm_slot(y);
#if TM_SIMD
            if (lanes) {
                tm_point_row_simd(tm_mid.h, out, out_width, mid_channels, L->point_out, L->point_weight, &L->point_q);
                continue;
            }
#else
            (void)lanes;
#endif
            tm_point_row(in, out, out_width, mid_channels, L->point_out, L->point_weight, &L->point_q);
        }
    }
}
