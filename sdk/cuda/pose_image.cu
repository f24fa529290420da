// Pose imaging on the GPU: PoseSyncNet's single-channel limb images and RGB previews.
//
// Mirrors the numpy references pixel for pixel: sdk/pose_image.py (pose_images: the
// per-pixel formula of its module docstring) and sdk/render.py (render_video_frames:
// layers composited in order, saliency bar). One thread per output pixel, blocks of
// pixels of one frame (grid.y = frame). Every float operation is an explicitly rounded
// intrinsic (__fmul_rn, __fadd_rn, ...), so the compiler fuses nothing into FMAs and the
// results are the reference's float32 results bit for bit; divisions and square roots
// are IEEE-rounded as numpy's are.
//
// Bones: int32 (n_bones, 2) joint pairs; reach: float32 (n_bones,) = half width + 0.5
// (pixels), computed on the host in float32 exactly as the reference does.

__device__ __forceinline__ float grt_clamp01(float x)
{
    return fminf(fmaxf(x, 0.0f), 1.0f);
}

// Coverage in [0, 1] of pixel centre (px, py) by the segment a-b of the given reach.
__device__ __forceinline__ float grt_segment_cover(float px, float py, float ax, float ay,
                                                   float bx, float by, float reach)
{
    const float dx = __fsub_rn(bx, ax);
    const float dy = __fsub_rn(by, ay);
    const float qx = __fsub_rn(px, ax);
    const float qy = __fsub_rn(py, ay);
    const float len2 = __fadd_rn(__fmul_rn(dx, dx), __fmul_rn(dy, dy));
    float t = 0.0f;
    if (len2 > 0.0f) {
        t = grt_clamp01(__fdiv_rn(__fadd_rn(__fmul_rn(qx, dx), __fmul_rn(qy, dy)), len2));
    }
    const float ex = __fsub_rn(qx, __fmul_rn(t, dx));
    const float ey = __fsub_rn(qy, __fmul_rn(t, dy));
    const float d = __fsqrt_rn(__fadd_rn(__fmul_rn(ex, ex), __fmul_rn(ey, ey)));
    return grt_clamp01(__fsub_rn(reach, d));
}

// Max coverage of pixel (px, py) over bones [first, last) of one frame's points (J, 2).
// With to_pixels the points are canonical and mapped to image coordinates as
// pose_image.canonical_to_image_pixels does: u = (x - x_min) * sx - 0.5, likewise v;
// without, they already are image coordinates (canvas pixels).
__device__ __forceinline__ float grt_bones_cover(
    const float* __restrict__ frame_points, const int* __restrict__ bones,
    const float* __restrict__ reach, int first, int last, float px, float py,
    bool to_pixels, float x_min, float y_min, float sx, float sy)
{
    float cover = 0.0f;
    for (int k = first; k < last; ++k) {
        const int a = bones[2 * k];
        const int b = bones[2 * k + 1];
        float ax = frame_points[2 * a], ay = frame_points[2 * a + 1];
        float bx = frame_points[2 * b], by = frame_points[2 * b + 1];
        if (to_pixels) {
            ax = __fsub_rn(__fmul_rn(__fsub_rn(ax, x_min), sx), 0.5f);
            ay = __fsub_rn(__fmul_rn(__fsub_rn(ay, y_min), sy), 0.5f);
            bx = __fsub_rn(__fmul_rn(__fsub_rn(bx, x_min), sx), 0.5f);
            by = __fsub_rn(__fmul_rn(__fsub_rn(by, y_min), sy), 0.5f);
        }
        if (!(isfinite(ax) && isfinite(ay) && isfinite(bx) && isfinite(by))) {
            continue;  // a missing (NaN) joint draws nothing
        }
        cover = fmaxf(cover, grt_segment_cover(px, py, ax, ay, bx, by, reach[k]));
    }
    return cover;
}

// out (n_frames, height, width) float32 in [0, 1] from canonical (n_frames, n_joints, 2).
// x_min, y_min: the ImagingConfig window's top-left (canonical units, float32);
// sx, sy: ImagingConfig.pixels_per_unit.
extern "C" __global__ void pose_images(
    const float* __restrict__ canonical, int n_joints, const int* __restrict__ bones,
    const float* __restrict__ reach, int n_bones, float x_min, float y_min, float sx,
    float sy, int height, int width, float* __restrict__ out)
{
    const long long frame = blockIdx.y;
    const int pixel = blockIdx.x * blockDim.x + threadIdx.x;
    if (pixel >= height * width) {
        return;
    }
    const int row = pixel / width;
    const int col = pixel % width;
    const float* points = canonical + frame * n_joints * 2;
    out[frame * height * width + pixel] = grt_bones_cover(
        points, bones, reach, 0, n_bones, (float)col, (float)row, true, x_min, y_min, sx, sy);
}

// out (n_frames, height, width, 3) uint8 RGB from canvas pixels (n_frames, n_joints, 2).
// Bones are grouped by layer: layer i is bones [layer_end[i-1], layer_end[i]) with colour
// layer_rgb[i] (float32 0..255); canvas = background, then per layer
// canvas += (colour - canvas) * cover. saliency (n_frames,) or null: the bottom `bar_rows`
// rows show the bar (bar_rgb = low, high, track colours, float32 (3, 3)).
extern "C" __global__ void preview_rgb(
    const float* __restrict__ pixels, int n_joints, const int* __restrict__ bones,
    const float* __restrict__ reach, const int* __restrict__ layer_end, int n_layers,
    const float* __restrict__ layer_rgb, const float* __restrict__ background,
    const float* __restrict__ saliency, const float* __restrict__ bar_rgb, int bar_rows,
    int height, int width, unsigned char* __restrict__ out)
{
    const long long frame = blockIdx.y;
    const int pixel = blockIdx.x * blockDim.x + threadIdx.x;
    if (pixel >= height * width) {
        return;
    }
    const int row = pixel / width;
    const int col = pixel % width;
    float rgb[3] = {background[0], background[1], background[2]};
    if (saliency != nullptr && row >= height - bar_rows) {
        const float score = saliency[frame];
        const int filled = (int)rintf(__fmul_rn(score, (float)width));
        for (int c = 0; c < 3; ++c) {
            rgb[c] = col < filled
                ? __fadd_rn(bar_rgb[c], __fmul_rn(__fsub_rn(bar_rgb[3 + c], bar_rgb[c]), score))
                : bar_rgb[6 + c];
        }
    } else {
        const float* points = pixels + frame * n_joints * 2;
        int first = 0;
        for (int layer = 0; layer < n_layers; ++layer) {
            const int last = layer_end[layer];
            const float cover = grt_bones_cover(points, bones, reach, first, last, (float)col,
                                                (float)row, false, 0.0f, 0.0f, 1.0f, 1.0f);
            for (int c = 0; c < 3; ++c) {
                rgb[c] = __fadd_rn(rgb[c],
                                   __fmul_rn(__fsub_rn(layer_rgb[3 * layer + c], rgb[c]), cover));
            }
            first = last;
        }
    }
    unsigned char* dst = out + (frame * height * width + pixel) * 3;
    for (int c = 0; c < 3; ++c) {
        dst[c] = (unsigned char)rintf(fminf(fmaxf(rgb[c], 0.0f), 255.0f));
    }
}
