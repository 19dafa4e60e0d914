/* tm_config.h - build-time settings of the tinymnist int8 runtime: buffer sizes and linkage.
 *
 * Buffer sizes belong to a model: its generated source (tinymnist_model.c) defines every one of
 * them, computed from the layer shapes, before the runtime. The defaults below are the bundled
 * model's; they exist so that each runtime file compiles alone (a check, an editor's index).
 *
 * Linkage: the generated source pastes the runtime files into one translation unit and defines
 * TM_ONE_FILE, so the runtime's functions and buffers are static there - the compiler sees every
 * call, inlines what is called once, and nothing but the model's API leaves the object. A file
 * compiled alone gets external linkage, declared in tm_runtime.h.
 */
#ifndef TM_CONFIG_H
#define TM_CONFIG_H

#ifndef TM_ARENA_BYTES
#define TM_ARENA_BYTES 12544 /* the largest activation tensor, int8 */
#endif
#ifndef TM_RING_BYTES
#define TM_RING_BYTES 1536 /* three zero-padded input rows of the widest layer */
#endif
#ifndef TM_MID_BYTES
#define TM_MID_BYTES 928 /* one depthwise output row (separable layers) and a pixel, int16 */
#endif
#ifndef TM_HEAD_CHANNELS
#define TM_HEAD_CHANNELS 28 /* input channels of the head */
#endif
#ifndef TM_POOL_BYTES
#define TM_POOL_BYTES 2 /* two output rows of the widest layer with a fused max-pool (if any) */
#endif
#ifndef TM_INPUT_POOL
#define TM_INPUT_POOL 0 /* 1: the image is 2x2 max-pooled as it is loaded (a model that starts with a pool) */
#endif
#ifndef TM_POINT_CIN
#define TM_POINT_CIN 32 /* input channels of the widest SIMD 1x1 conv (weight lanes on the stack) */
#endif

/* The kernels the model runs, as TM_K_* bits (tm_runtime.h): in a build without SIMD, and in one
 * with it. Only those are compiled (flash); the defaults, all of them, are for compiling alone. */
#ifndef TM_KERNELS_PORTABLE
#define TM_KERNELS_PORTABLE 0xfff
#endif
#ifndef TM_KERNELS_SIMD
#define TM_KERNELS_SIMD 0xfff
#endif

/* TM_NOINLINE: a hot loop kept in a function of its own, where GCC allocates registers for it
 * alone (Thumb-1 has 8 low registers; inlined into its caller the loop's pointers end up on the
 * stack). TM_INLINE: the one-instruction primitives of tm_dsp.h inlined at -Os too (GCC's size
 * heuristic otherwise calls each one as a function). */
#if defined(__GNUC__)
#define TM_NOINLINE __attribute__((noinline))
#define TM_INLINE inline __attribute__((always_inline))
#else
#define TM_NOINLINE
#define TM_INLINE inline
#endif

#ifdef TM_ONE_FILE
#define TM_PRIVATE static /* a runtime function or buffer (definition or declaration) */
#define TM_SHARED static  /* a buffer's declaration in tm_runtime.h */
#else
#define TM_PRIVATE
#define TM_SHARED extern
#endif

#endif /* TM_CONFIG_H */
