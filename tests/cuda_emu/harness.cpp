// The kernels of sdk/cuda compiled for the CPU: each kernel gets an
// `extern "C" int emu_<kernel>(gx, gy, gz, bx, by, bz, kernel args...)` entry point that
// runs the grid through cuda_emu.h. Built by tests/cuda_emu/emulator.py with the same
// -D defines NVRTC gets; loaded with ctypes.
#include "cuda_emu.h"

#include "mfcc.cu"
#include "pose_image.cu"
#include "selftest.cu"

#define EMU_PARAMS(...) __VA_ARGS__
#define EMU_KERNEL(name, params, args)                                                  \
    extern "C" int emu_##name(unsigned gx, unsigned gy, unsigned gz, unsigned bx,       \
                              unsigned by, unsigned bz, EMU_PARAMS params)              \
    {                                                                                    \
        return emu::launch(dim3(gx, gy, gz), dim3(bx, by, bz), [&] { name args; });    \
    }

EMU_KERNEL(mfcc_frames,
           (const long long* items, const float* audio, const float* audio_ring,
            const long long* stream_pos, float* mfcc_ring, int ring_frames,
            const float* window, const float* mel, const float* dct),
           (items, audio, audio_ring, stream_pos, mfcc_ring, ring_frames, window, mel, dct))
EMU_KERNEL(mfcc_commit,
           (const long long* items, const float* audio, float* audio_ring,
            long long* stream_pos),
           (items, audio, audio_ring, stream_pos))
EMU_KERNEL(gather_feature_frames,
           (const long long* items, int num_frames, const float* mfcc_ring, int ring_frames,
            float* out),
           (items, num_frames, mfcc_ring, ring_frames, out))
EMU_KERNEL(gather_mfcc,
           (const long long* items, int num_frames, const float* mfcc_ring, int ring_frames,
            float* out, long long stride_b, long long stride_t, long long stride_c),
           (items, num_frames, mfcc_ring, ring_frames, out, stride_b, stride_t, stride_c))
EMU_KERNEL(pose_images,
           (const float* canonical, int n_joints, const int* bones, const float* reach,
            int n_bones, float x_min, float y_min, float sx, float sy, int height, int width,
            float* out),
           (canonical, n_joints, bones, reach, n_bones, x_min, y_min, sx, sy, height, width,
            out))
EMU_KERNEL(preview_rgb,
           (const float* pixels, int n_joints, const int* bones, const float* reach,
            const int* layer_end, int n_layers, const float* layer_rgb,
            const float* background, const float* saliency, const float* bar_rgb,
            int bar_rows, int height, int width, unsigned char* out),
           (pixels, n_joints, bones, reach, layer_end, n_layers, layer_rgb, background,
            saliency, bar_rgb, bar_rows, height, width, out))
EMU_KERNEL(selftest_shift, (const float* in, float* out, int use_barrier),
           (in, out, use_barrier))
EMU_KERNEL(selftest_divergent_barrier, (float* out), (out))
