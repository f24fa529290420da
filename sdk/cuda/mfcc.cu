// Streaming MFCC for many audio streams at once, and the gathers that turn MFCC frames
// into the generator's feature frames (engine input) and PoseSyncNet's MFCC clips.
//
// The numpy reference (the spec) is sdk/mfcc.py; the host side is sdk/cuda/mfcc.py.
// Every FeatureConfig number arrives as a -D define (sdk/cuda/nvrtc.py: feature_defines);
// none is written here. The window, mel and DCT matrices arrive as device arrays
// (MfccMatrices), so the kernel computes exactly what the reference multiplies.
//
// Per stream slot s (device state, owned by CudaMfcc):
//   stream_pos[s]                      int64, samples received so far
//   audio_ring[s][GRT_N_FFT]           the last GRT_N_FFT samples, sample p at p % GRT_N_FFT
//   mfcc_ring[s][ring_frames][N_MFCC]  MFCC frames, frame j at j % ring_frames
// MFCC frame j (center=True, zero padded) is the windowed span of samples
// [j*HOP - N_FFT/2, j*HOP + N_FFT/2); it is final once j*HOP + N_FFT/2 samples arrived.
// Samples before 0 are zeros. A frame still to be computed starts later than
// pos - N_FFT, so a ring of N_FFT samples always holds the tail it needs.
//
// One accept is two launches on the same CUDA stream:
//   mfcc_frames  grid (max new frames per item, items), one block per new MFCC frame:
//                frame -> window -> power spectrum -> mel -> log10 floor -> DCT.
//   mfcc_commit  grid (items): appends the new tail to the ring and advances stream_pos.
// Both read stream_pos from the device, so a captured CUDA graph of an accept with fixed
// chunk lengths stays valid when replayed (positions advance on the device).
//
// Power spectrum, when N_FFT is a power of two (every shipped config): a real FFT done as
// one N_FFT/2-point complex FFT of the packed frame z[n] = x[2n] + i x[2n+1] (radix 2,
// decimation in time, bit-reversed load, one barrier per stage), then the split
// X[k] = E[k] + W^k O[k] with E = (Z[k] + conj Z[M-k]) / 2, O = (Z[k] - conj Z[M-k]) / 2i,
// W = exp(-2 pi i / N_FFT). ~2.5 N log2 N FLOPs per frame instead of the 4 N^2 / 2 of a
// direct DFT (512 points: 14k instead of 526k). Twiddles W^k (k < N/2) are tabulated per
// block with sincospif (exact arguments). Any other N_FFT falls back to a direct DFT.
//
// Shared memory is dynamic (sized by the host, sdk/cuda/mfcc.py: mfcc_frames_shared_bytes),
// so large N_FFT fit: FFT path, in floats: z float2[M] | twiddle float2[M] | power[M + 1] |
// log_mel[N_MELS] with M = N_FFT / 2, i.e. 4 (5M + 1 + N_MELS) bytes (512: 5.3 KB,
// 4096: 41 KB, 8192: 82 KB: over 48 KB the host opts in with cuFuncSetAttribute).
// DFT path: frame[N] | cos[N] | sin[N] | power[N_FREQS] | log_mel[N_MELS].
//
// items layout: int64 triples (slot, offset into `audio`, length) per grid row blockIdx.y.
// A slot appears at most once per launch (the host checks).

#ifndef GRT_N_FFT
#error "compile with the FeatureConfig defines from sdk/cuda/nvrtc.py (feature_defines)"
#endif

#define GRT_ACCEPT_FIELDS 3
#define GRT_DFT_LANES 8  // partial sums per DFT bin (direct DFT fallback only)
#define GRT_FFT_HALF (GRT_N_FFT / 2)

#if (GRT_N_FFT & (GRT_N_FFT - 1)) == 0 && GRT_N_FFT >= 8
#define GRT_USE_FFT 1
#else
#define GRT_USE_FFT 0
#if GRT_N_FFT % GRT_DFT_LANES != 0
#error "a GRT_N_FFT that is not a power of two must be a multiple of GRT_DFT_LANES"
#endif
#endif

#ifndef GRT_DYNAMIC_SHARED
#define GRT_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

// log2 of a power of two, at compile time.
__host__ __device__ constexpr int grt_log2(int n)
{
    return n <= 1 ? 0 : 1 + grt_log2(n / 2);
}

// Sample t (0 <= t < N_FFT) of the frame starting at sample `start` of a stream at
// position pos0 (before this chunk): this chunk's audio, the ring, or the zero padding.
__device__ __forceinline__ float grt_frame_sample(long long start, int t, long long pos0,
                                                  const float* __restrict__ audio,
                                                  long long offset,
                                                  const float* __restrict__ ring)
{
    const long long p = start + t;
    if (p >= pos0) {
        return audio[offset + (p - pos0)];  // p < pos0 + length: the frame is final
    }
    return p >= 0 ? ring[p % GRT_N_FFT] : 0.0f;
}

// MFCC frames that are final after n samples: j with j*HOP + N_FFT/2 <= n.
__device__ __forceinline__ long long grt_frames_ready(long long n)
{
    return n >= GRT_N_FFT / 2 ? (n - GRT_N_FFT / 2) / GRT_HOP_LENGTH + 1 : 0;
}

// First MFCC frame of feature frame k: floor(k * sample_rate / (fps * hop)).
__device__ __forceinline__ long long grt_mfcc_start(long long k)
{
    return (k * GRT_SAMPLE_RATE) / ((long long)GRT_FPS * GRT_HOP_LENGTH);
}

extern "C" __global__ void mfcc_frames(
    const long long* __restrict__ items,      // (n_items, 3): slot, offset, length
    const float* __restrict__ audio,          // new samples of all items, concatenated
    const float* __restrict__ audio_ring,     // (max_streams, N_FFT)
    const long long* __restrict__ stream_pos, // (max_streams,)
    float* __restrict__ mfcc_ring,            // (max_streams, ring_frames, N_MFCC)
    int ring_frames,
    const float* __restrict__ window,         // (N_FFT,) Hann, zero padded to N_FFT
    const float* __restrict__ mel,            // (N_MELS, N_FREQS)
    const float* __restrict__ dct)            // (N_MFCC, N_MELS)
{
    GRT_DYNAMIC_SHARED(float, shared);

    const long long* item = items + GRT_ACCEPT_FIELDS * (long long)blockIdx.y;
    const long long slot = item[0];
    const long long offset = item[1];
    const long long length = item[2];
    const long long pos0 = stream_pos[slot];
    const long long first = grt_frames_ready(pos0);
    const long long count = grt_frames_ready(pos0 + length) - first;
    if ((long long)blockIdx.x >= count) {
        return;  // the whole block leaves together
    }
    const long long j = first + blockIdx.x;
    const long long start = j * GRT_HOP_LENGTH - GRT_N_FFT / 2;
    const float* ring = audio_ring + slot * GRT_N_FFT;

#if GRT_USE_FFT
    constexpr int M = GRT_FFT_HALF;
    constexpr int LOG2_M = grt_log2(M);
    float2* z = reinterpret_cast<float2*>(shared);
    float2* twiddle = z + M;  // W^k = (cos, -sin)(2 pi k / N), k < M
    float* power = shared + 4 * M;
    float* log_mel = power + M + 1;

    for (int n = threadIdx.x; n < M; n += blockDim.x) {
        const int t = 2 * n;
        const float even = grt_frame_sample(start, t, pos0, audio, offset, ring) * window[t];
        const float odd =
            grt_frame_sample(start, t + 1, pos0, audio, offset, ring) * window[t + 1];
        const int r = LOG2_M == 0 ? 0 : (int)(__brev((unsigned)n) >> (32 - LOG2_M));
        z[r] = make_float2(even, odd);
        float s, c;
        sincospif(2.0f * (float)n / (float)GRT_N_FFT, &s, &c);  // exact argument
        twiddle[n] = make_float2(c, -s);
    }
    __syncthreads();

    // Radix-2 butterflies; stage `half` combines pairs `half` apart, twiddle stride M/half.
    for (int half = 1; half < M; half *= 2) {
        const int stride = M / half;
        for (int b = threadIdx.x; b < M / 2; b += blockDim.x) {
            const int k = b % half;
            const int i0 = (b / half) * 2 * half + k;
            const int i1 = i0 + half;
            const float2 w = twiddle[k * stride];
            const float2 u = z[i0];
            const float2 v = z[i1];
            const float tr = w.x * v.x - w.y * v.y;
            const float ti = w.x * v.y + w.y * v.x;
            z[i0] = make_float2(u.x + tr, u.y + ti);
            z[i1] = make_float2(u.x - tr, u.y - ti);
        }
        __syncthreads();
    }

    // Split into the real FFT's bins 0..M: |E + W^k O|^2 (bins 0 and M both come from
    // Z[0], so M threads cover the M + 1 bins).
    for (int k = threadIdx.x; k < M; k += blockDim.x) {
        if (k == 0) {
            const float2 z0 = z[0];
            const float dc = z0.x + z0.y;
            const float nyquist = z0.x - z0.y;
            power[0] = dc * dc;
            power[M] = nyquist * nyquist;
            continue;
        }
        const float2 a = z[k];
        const float2 b = z[M - k];
        const float er = 0.5f * (a.x + b.x);
        const float ei = 0.5f * (a.y - b.y);
        const float or_ = 0.5f * (a.y + b.y);   // O = (a - conj b) / 2i
        const float oi = -0.5f * (a.x - b.x);
        const float2 w = twiddle[k];
        const float xr = er + (w.x * or_ - w.y * oi);
        const float xi = ei + (w.x * oi + w.y * or_);
        power[k] = xr * xr + xi * xi;
    }
    __syncthreads();
#else
    float* frame = shared;
    float* twiddle_cos = frame + GRT_N_FFT;
    float* twiddle_sin = twiddle_cos + GRT_N_FFT;
    float* power = twiddle_sin + GRT_N_FFT;
    float* log_mel = power + GRT_N_FREQS;

    for (int t = threadIdx.x; t < GRT_N_FFT; t += blockDim.x) {
        frame[t] = grt_frame_sample(start, t, pos0, audio, offset, ring) * window[t];
        float s, c;
        sincospif(2.0f * (float)t / (float)GRT_N_FFT, &s, &c);  // exact argument
        twiddle_cos[t] = c;
        twiddle_sin[t] = s;
    }
    __syncthreads();

    for (int k = threadIdx.x; k < GRT_N_FREQS; k += blockDim.x) {
        // GRT_DFT_LANES interleaved partial sums: shorter rounding chains, more ILP.
        float re_part[GRT_DFT_LANES];
        float im_part[GRT_DFT_LANES];
        for (int lane = 0; lane < GRT_DFT_LANES; ++lane) {
            re_part[lane] = 0.0f;
            im_part[lane] = 0.0f;
        }
        int index = 0;  // (k * t) mod N_FFT
        for (int t = 0; t < GRT_N_FFT; t += GRT_DFT_LANES) {
            for (int lane = 0; lane < GRT_DFT_LANES; ++lane) {
                re_part[lane] += frame[t + lane] * twiddle_cos[index];
                im_part[lane] -= frame[t + lane] * twiddle_sin[index];
                index += k;
                if (index >= GRT_N_FFT) {
                    index -= GRT_N_FFT;
                }
            }
        }
        float re = 0.0f;
        float im = 0.0f;
        for (int lane = 0; lane < GRT_DFT_LANES; ++lane) {
            re += re_part[lane];
            im += im_part[lane];
        }
        power[k] = re * re + im * im;
    }
    __syncthreads();
#endif

    for (int m = threadIdx.x; m < GRT_N_MELS; m += blockDim.x) {
        const float* row = mel + m * GRT_N_FREQS;
        float energy = 0.0f;
        for (int k = 0; k < GRT_N_FREQS; ++k) {
            energy += row[k] * power[k];
        }
        log_mel[m] = 10.0f * log10f(fmaxf(energy, GRT_AMIN));
    }
    __syncthreads();

    float* out = mfcc_ring + (slot * ring_frames + j % ring_frames) * GRT_N_MFCC;
    for (int c = threadIdx.x; c < GRT_N_MFCC; c += blockDim.x) {
        const float* row = dct + c * GRT_N_MELS;
        float value = 0.0f;
        for (int m = 0; m < GRT_N_MELS; ++m) {
            value += row[m] * log_mel[m];
        }
        out[c] = value;
    }
}

extern "C" __global__ void mfcc_commit(
    const long long* __restrict__ items,  // (n_items, 3): slot, offset, length
    const float* __restrict__ audio,
    float* __restrict__ audio_ring,       // (max_streams, N_FFT)
    long long* __restrict__ stream_pos)   // (max_streams,)
{
    const long long* item = items + GRT_ACCEPT_FIELDS * (long long)blockIdx.x;
    const long long slot = item[0];
    const long long offset = item[1];
    const long long length = item[2];
    const long long pos0 = stream_pos[slot];
    const long long keep = length < GRT_N_FFT ? length : GRT_N_FFT;
    float* ring = audio_ring + slot * GRT_N_FFT;
    for (long long i = length - keep + threadIdx.x; i < length; i += blockDim.x) {
        ring[(pos0 + i) % GRT_N_FFT] = audio[offset + i];
    }
    __syncthreads();  // every thread has read pos0 before it moves
    if (threadIdx.x == 0) {
        stream_pos[slot] = pos0 + length;
    }
}

// out[b, t, :] = feature frame (first_b + t) of stream slot_b: MFCC frames
// [mfcc_start(k), mfcc_start(k) + MFCC_CONTEXT) flattened frame-major (FEATURE_DIM values).
// items: int64 pairs (slot, first feature frame) per grid row. out: (n_items, num_frames,
// FEATURE_DIM) float32, contiguous: the generator engine's `features` input.
extern "C" __global__ void gather_feature_frames(
    const long long* __restrict__ items,
    int num_frames,
    const float* __restrict__ mfcc_ring,
    int ring_frames,
    float* __restrict__ out)
{
    const long long slot = items[2 * (long long)blockIdx.y];
    const long long first = items[2 * (long long)blockIdx.y + 1];
    const long long total = (long long)num_frames * GRT_FEATURE_DIM;
    float* row = out + (long long)blockIdx.y * total;
    const float* ring = mfcc_ring + slot * ring_frames * GRT_N_MFCC;
    for (long long v = (long long)blockIdx.x * blockDim.x + threadIdx.x; v < total;
         v += (long long)gridDim.x * blockDim.x) {
        const long long t = v / GRT_FEATURE_DIM;
        const int r = (int)(v % GRT_FEATURE_DIM);
        const long long j = grt_mfcc_start(first + t) + r / GRT_N_MFCC;
        row[v] = ring[(j % ring_frames) * GRT_N_MFCC + r % GRT_N_MFCC];
    }
}

// out[b*stride_b + t*stride_t + c*stride_c] = coefficient c of MFCC frame (first_b + t) of
// stream slot_b. Time-major (T, N_MFCC) clips: stride_t = N_MFCC, stride_c = 1;
// PoseSyncNet's (N_MFCC, T) clips: stride_t = 1, stride_c = T. Strides in elements.
extern "C" __global__ void gather_mfcc(
    const long long* __restrict__ items,  // (n_items, 2): slot, first MFCC frame
    int num_frames,
    const float* __restrict__ mfcc_ring,
    int ring_frames,
    float* __restrict__ out,
    long long stride_b,
    long long stride_t,
    long long stride_c)
{
    const long long slot = items[2 * (long long)blockIdx.y];
    const long long first = items[2 * (long long)blockIdx.y + 1];
    const long long total = (long long)num_frames * GRT_N_MFCC;
    const float* ring = mfcc_ring + slot * ring_frames * GRT_N_MFCC;
    for (long long v = (long long)blockIdx.x * blockDim.x + threadIdx.x; v < total;
         v += (long long)gridDim.x * blockDim.x) {
        const long long t = v / GRT_N_MFCC;
        const int c = (int)(v % GRT_N_MFCC);
        out[blockIdx.y * stride_b + t * stride_t + c * stride_c] =
            ring[((first + t) % ring_frames) * GRT_N_MFCC + c];
    }
}
