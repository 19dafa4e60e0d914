/* One in-place layer (tm_layer): rows fetched into the ring in the safe order, then the 3x3
 * part, the 1x1 part, or both fused row by row. */
#include "tm_runtime.h"

/* Bytes per channel of a planar ring slot (SIMD 3x3 layers): the padded row, the two bytes the
 * last pixel pair's word reaches past it, rounded up to whole words. */
static int tm_plane_bytes(int padded_width)
{
    return (padded_width + 2 + 3) & ~3;
}

static void tm_fetch_row(const tm_layer *L, int r, int padded_width, int plane)
{
#if TM_SIMD
    if (plane) {
        tm_load_plane_row(L, r, plane);
        return;
    }
#else
    (void)plane;
#endif
    tm_load_row(L, r, padded_width);
}

#if TM_SIMD
/* One output row of a SIMD 3x3 layer: channels' planes in the ring (input row y - pad + k in the
 * slot tm_slot_index of it), output to `out` (int8, conv_out channels per pixel) or to tm_mid
 * (wide: int16 lanes, mid_channels per pixel). */
static void tm_conv3_row_simd(const tm_layer *L, int y, int plane, void *out, int out_width, int wide, int mid_channels)
{
    const tm_requant *q = &L->conv_q;
    tm_conv3_job job;
    int first = tm_slot_index(y - L->padding); /* the slot of kernel row 0 */
    job.w = L->conv_weight;
    job.row0 = 3 * tm_slot_index(-first), job.row1 = 3 * tm_slot_index(1 - first), job.row2 = 3 * tm_slot_index(2 - first);
    job.bias = q->bias, job.multiplier = q->multiplier;
    job.offset = q->offset ? q->offset : &q->zero, job.offset_step = q->offset ? 4 : 0;
    job.in = tm_ring, job.plane_step = L->conv_depthwise ? plane : 0;
    job.out = out, job.stride = wide ? 2 * mid_channels : L->conv_out, job.wide = wide;
    job.o = 0, job.channels = L->conv_out, job.pairs = (out_width + 1) / 2;
    tm_conv3_rows(&job);
}
#endif

TM_FN void tm_run_layer(const tm_layer *L)
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
    /* Both SIMD kernels of a separable layer: the depthwise row goes to tm_mid as int16 lanes. */
    int lanes = plane && L->point_weight && L->point_q.simple && mid_channels % 4 == 0;
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
