// LAM's progressive blurring path in one launch (compiled by CuPy RawModule / NVRTC; also `nvcc -c`).
//
// gamma_k = K_{sigma_k} * I with K = outer(k, k) for the 1-D kernel k of step k, reflect-101 border.
// One thread per output pixel (n, c, y, x) of points [n_out, C, h, w] and weights [n_out, C, h, w]:
//   right rule     (n_out = m):     point = gamma_{n+1},  weight = gamma_{n+1} - gamma_n
//   trapezoid rule (n_out = m + 1): point = gamma_n,
//                                   weight = (gamma_{min(n+1,m)} - gamma_{max(n-1,0)}) / 2
// which are kernels/paths.py's weights: (Delta_n + Delta_{n+1}) / 2 telescopes to that difference.
//
// Accuracy: taps are float64 and the sums run in float64, as in the NumPy path, so the two differ
// only by float64 summation order before the final rounding to float32: expected max abs
// difference one float32 ulp of the value (<= 6e-8 for images in [0, 1]); tests demand < 1e-6.

// Reflect-101 (OpenCV BORDER_REFLECT_101, scipy mode="mirror"): -1 -> 1, n -> n - 2, folded
// repeatedly (period 2(n - 1)) when the kernel radius exceeds n - 1; a length-1 axis is constant.
__host__ __device__ inline int reflect101(int p, int n) {
    if (p >= 0 && p < n) return p;  // inside: most taps, and no integer division
    if (n == 1) return 0;
    const int period = 2 * (n - 1);
    p %= period;
    if (p < 0) p += period;
    return p < n ? p : period - p;
}

// gamma(y, x) of one channel plane [h, w] for the 1-D kernel `k` of length `l`: rows, then columns.
__host__ __device__ inline double blur_at(const float* plane, int h, int w, int y, int x,
                                          const double* k, int l) {
    const int r = l / 2;
    double acc = 0.0;
    for (int i = 0; i < l; ++i) {
        const float* row = plane + (long long)reflect101(y + i - r, h) * w;
        double s = 0.0;
        for (int j = 0; j < l; ++j) s += k[j] * (double)row[reflect101(x + j - r, w)];
        acc += k[i] * s;
    }
    return acc;
}

// Output element `idx` of points and weights; a function of its own so that host code can check it.
__host__ __device__ inline void blur_path_pixel(long long idx, const float* image, const double* kernels,
                                                float* points, float* weights,
                                                int m, int channels, int h, int w, int l, int trapezoid) {
    const long long plane = (long long)h * w;
    const int x = (int)(idx % w);
    const int y = (int)((idx / w) % h);
    const long long c = (idx / plane) % channels;
    const int n = (int)(idx / (plane * channels));
    const float* src = image + c * plane;

    const int at = trapezoid ? n : n + 1;                      // kernel row of this point
    const int lo = trapezoid ? (n > 0 ? n - 1 : 0) : n;        // weight = scale * (gamma_hi - gamma_lo)
    const int hi = trapezoid ? (n < m ? n + 1 : m) : n + 1;
    const double scale = trapezoid ? 0.5 : 1.0;

    const double g_at = blur_at(src, h, w, y, x, kernels + (long long)at * l, l);
    const double g_lo = blur_at(src, h, w, y, x, kernels + (long long)lo * l, l);
    const double g_hi = hi == at ? g_at : blur_at(src, h, w, y, x, kernels + (long long)hi * l, l);
    points[idx] = (float)g_at;
    weights[idx] = (float)(scale * (g_hi - g_lo));
}

// image [C, h, w]; kernels [m + 1, l] (row k = 1-D kernel of sigma_k); trapezoid: 0 = right rule.
extern "C" __global__ void blur_path(const float* __restrict__ image, const double* __restrict__ kernels,
                                     float* __restrict__ points, float* __restrict__ weights,
                                     int m, int channels, int h, int w, int l, int trapezoid) {
    const long long total = (long long)(m + (trapezoid ? 1 : 0)) * channels * h * w;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < total) blur_path_pixel(idx, image, kernels, points, weights, m, channels, h, w, l, trapezoid);
}
