/* A training batch from the uint8 dataset: gather, random affine augmentation (bilinear, zeros
 * outside, as affine_grid + grid_sample with align_corners=False) with an optional displacement
 * field (elastic distortion), normalization; one pass, one call (in PyTorch these were ~25 small
 * tensor operations per step). */
#include "tm_kernels.h"
#include <math.h>

#define PAD 2 /* zero border around the source plane: every bilinear tap of a clamped coordinate lands in it */

/* Samples the warped image: out[i, j] = (bilinear(plane at the source of (i, j)) - mean) / std, the
 * source being t's affine map of (i, j)'s normalized coordinates plus d's offset there (d NULL: none).
 * plane: the image in a zero border of PAD pixels, so that sampling needs no bounds checks: a
 * coordinate whose taps all lie outside the image is clamped into the border, where every tap is zero
 * (the same sum as skipping the taps, term by term). Always inlined, and called with d a literal NULL
 * when there is no field, so that the plain affine row compiles without the field's loads. */
static inline __attribute__((always_inline)) void warp(const float *plane, int H, int W, const float *t,
                                                        const float *d, float mean, float std, float *out)
{
    const int PW = W + 2 * PAD;
    float xns[TM_BATCH_MAX_SIDE];
    for (int j = 0; j < W; j++) xns[j] = (float)(2 * j + 1) / (float)W - 1.0f;
    for (int i = 0; i < H; i++) {
        const float yn = (float)(2 * i + 1) / (float)H - 1.0f;
        for (int j = 0; j < W; j++) {
            const float xn = xns[j];
            float gx = t[0] * xn + t[1] * yn + t[2], gy = t[3] * xn + t[4] * yn + t[5];
            if (d) {
                gx += d[2 * (i * W + j)];
                gy += d[2 * (i * W + j) + 1];
            }
            const float ix = ((gx + 1.0f) * (float)W - 1.0f) * 0.5f, iy = ((gy + 1.0f) * (float)H - 1.0f) * 0.5f;
            const float fx = floorf(ix), fy = floorf(iy);
            const float wx1 = ix - fx, wy1 = iy - fy, wx0 = 1.0f - wx1, wy0 = 1.0f - wy1;
            /* taps at x0, x0 + 1 are inside the image only for x0 in [-1, W - 1]; outside, clamp into the border.
             * Comparisons rather than fminf/fmaxf, and an index rather than a pointer: GCC then vectorizes
             * the row, loading the taps lane by lane (same results). */
            const float cx = fx < (float)-PAD ? (float)-PAD : (fx > (float)W ? (float)W : fx);
            const float cy = fy < (float)-PAD ? (float)-PAD : (fy > (float)H ? (float)H : fy);
            const int q = ((int)cy + PAD) * PW + (int)cx + PAD;
            float v = 0.0f;
            v += plane[q] * (wx0 * wy0);
            v += plane[q + 1] * (wx1 * wy0);
            v += plane[q + PW] * (wx0 * wy1);
            v += plane[q + PW + 1] * (wx1 * wy1);
            out[i * W + j] = (v - mean) / std;
        }
    }
}

/* One image: out = (warp(img / 255) - mean) / std; t = the 2 x 3 affine map from output to input
 * coordinates normalized to [-1, 1], as affine_grid takes it; NULL for none. d: NULL, or (with t)
 * H x W x 2 offsets in the same normalized units added to each output pixel's (x, y) source
 * coordinate after the affine map, as a displacement added to affine_grid's grid. */
static void one_image(const uint8_t *img, int H, int W, const float *t, const float *d, float mean, float std,
                      float *out, float *plane)
{
    if (!t) {
        for (int p = 0; p < H * W; p++) out[p] = ((float)img[p] / 255.0f - mean) / std;
        return;
    }
    const int PW = W + 2 * PAD, PH = H + 2 * PAD;
    for (int p = 0; p < PW * PH; p++) plane[p] = 0.0f;
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) plane[(i + PAD) * PW + j + PAD] = (float)img[i * W + j] / 255.0f;
    if (d)
        warp(plane, H, W, t, d, mean, std, out);
    else
        warp(plane, H, W, t, NULL, mean, std, out);
}

void tm_batch(const uint8_t *images, const int64_t *idx, int N, int H, int W, const float *rand, const float *disp,
              float rotate, float zoom_lo, float zoom_hi, float translate, float mean, float std, float *x)
{
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float plane[(TM_BATCH_MAX_SIDE + 2 * PAD) * (TM_BATCH_MAX_SIDE + 2 * PAD)];
        float t[6], *tp = NULL;
        if (rand) {
            const float *r = rand + 4 * n;
            const float angle = (r[0] * 2.0f - 1.0f) * rotate;
            const float zoom = zoom_lo + r[1] * (zoom_hi - zoom_lo);
            const float c = cosf(angle) / zoom, s = sinf(angle) / zoom;
            t[0] = c; t[1] = -s; t[2] = (r[2] * 2.0f - 1.0f) * translate * 2.0f / (float)W;
            t[3] = s; t[4] = c;  t[5] = (r[3] * 2.0f - 1.0f) * translate * 2.0f / (float)H;
            tp = t;
        }
        const float *dp = rand && disp ? disp + (size_t)n * H * W * 2 : NULL;
        one_image(images + (size_t)idx[n] * H * W, H, W, tp, dp, mean, std, x + (size_t)n * H * W, plane);
    }
}
