// A convolutional network (blocks of convolution -> batch norm -> activation -> optional 2x2
// max-pool, a head, a dense output layer): architecture, flat parameter layout, forward pass,
// loss, gradient by backpropagation and Hessian-vector product by the R-operator, following
// docs/math.md, section 5 (the NumPy oracle is metafast.reference.ConvNet).
//
// Inside, every image is a row-major matrix (rows * H * W, channels), channels fastest: the
// layout the convolution's product Z = P K^T produces, so no pass transposes an activation.
// Only the first block reads the caller's (rows, C, H, W) input, through im2col's strides.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "metafast/activations.hpp"
#include "metafast/buffer.hpp"
#include "metafast/kernels.hpp"
#include "metafast/losses.hpp"
#include "metafast/network.hpp"

namespace metafast {

enum class Padding { same, valid };
enum class Head { average, flatten };

// One block's geometry (docs/math.md §5.1) and where its parameters sit in theta.
struct ConvBlock {
    std::size_t in_c = 0, in_h = 0, in_w = 0;    // input image
    std::size_t out_c = 0;                       // output channels
    std::size_t conv_h = 0, conv_w = 0;          // convolution output
    std::size_t pad_top = 0, pad_left = 0;       // zeros before, per axis
    std::size_t out_h = 0, out_w = 0;            // block output (after the pool)
    std::size_t weight = 0, bias = 0, shift = 0, scale = 0;  // offsets in theta
};

class ConvNet {
public:
    // Limits that keep every size product far from overflow (and far beyond what fits in memory).
    static constexpr std::size_t max_size_allowed = std::size_t{1} << 24;     // any one size
    static constexpr std::size_t max_params_allowed = std::size_t{1} << 36;
    static constexpr std::size_t max_values_allowed = std::size_t{1} << 40;  // per row, per tensor

    ConvNet(std::size_t in_c, std::size_t in_h, std::size_t in_w, std::vector<std::size_t> channels,
            std::size_t outputs, std::size_t kernel_size, std::size_t stride, Padding padding, bool pool,
            bool batch_norm, bool batch_norm_scale, double batch_norm_eps, Activation activation, Head head,
            bool bias)
        : channels_(std::move(channels)), outputs_(outputs), k_(kernel_size), stride_(stride), padding_(padding),
          pool_(pool), batch_norm_(batch_norm), batch_norm_scale_(batch_norm_scale), eps_(batch_norm_eps),
          activation_(activation), head_(head), bias_(bias) {
        const std::string shape = "(" + std::to_string(in_c) + ", " + std::to_string(in_h) + ", " +
                                  std::to_string(in_w) + ")";
        check_size(in_c, "input_shape[0]");
        check_size(in_h, "input_shape[1]");
        check_size(in_w, "input_shape[2]");
        if (channels_.empty()) throw std::invalid_argument("channels must name at least one block, got ()");
        for (std::size_t i = 0; i < channels_.size(); ++i)
            check_size(channels_[i], ("channels[" + std::to_string(i) + "]").c_str());
        check_size(outputs_, "outputs");
        check_size(k_, "kernel_size");
        check_size(stride_, "stride");
        if (channels_.size() > 4096)
            throw std::invalid_argument("channels must name at most 4096 blocks, got " +
                                        std::to_string(channels_.size()));
        if (batch_norm_scale_ && !batch_norm_)
            throw std::invalid_argument("batch_norm_scale=True needs batch_norm=True");
        if (!(std::isfinite(eps_) && eps_ > 0))
            throw std::invalid_argument("batch_norm_eps must be finite and > 0, got " + std::to_string(eps_));
        input_values_ = checked_product({in_c, in_h, in_w}, "input_shape " + shape);

        // Geometry of every block (docs/math.md §5.1), checked before anything is allocated.
        std::size_t c = in_c, h = in_h, w = in_w;
        const char* pad_name = padding_ == Padding::same ? "'same'" : "'valid'";
        for (std::size_t b = 0; b < channels_.size(); ++b) {
            ConvBlock blk;
            blk.in_c = c, blk.in_h = h, blk.in_w = w, blk.out_c = channels_[b];
            std::size_t pad_bottom = 0, pad_right = 0;
            axis(h, blk.conv_h, blk.pad_top, pad_bottom);
            axis(w, blk.conv_w, blk.pad_left, pad_right);
            const std::string number = std::to_string(b + 1);
            if (blk.conv_h == 0 || blk.conv_w == 0)
                throw std::invalid_argument("input_shape " + shape + " is too small: block " + number +
                                            "'s convolution (kernel_size=" + std::to_string(k_) + ", stride=" +
                                            std::to_string(stride_) + ", padding=" + pad_name + ") maps " +
                                            std::to_string(h) + "x" + std::to_string(w) + " to " +
                                            std::to_string(blk.conv_h) + "x" + std::to_string(blk.conv_w));
            blk.out_h = blk.conv_h, blk.out_w = blk.conv_w;
            if (pool_) {
                if (blk.conv_h < 2 || blk.conv_w < 2)
                    throw std::invalid_argument("input_shape " + shape + " is too small: block " + number +
                                                "'s 2x2 max-pool maps " + std::to_string(blk.conv_h) + "x" +
                                                std::to_string(blk.conv_w) + " to " + std::to_string(blk.conv_h / 2) +
                                                "x" + std::to_string(blk.conv_w / 2));
                blk.out_h /= 2, blk.out_w /= 2;
            }
            const std::string what = "block " + number;
            // Per row: the patches (conv pixels x C k k) and the images; the weights O C k k.
            checked_product({blk.conv_h, blk.conv_w, c, k_, k_}, what + "'s patch matrix");
            checked_product({blk.conv_h, blk.conv_w, blk.out_c}, what + "'s output");
            const std::size_t weights = checked_product({blk.out_c, c, k_, k_}, what + "'s weights");
            blk.weight = add_params(weights);
            blk.bias = bias_ ? add_params(blk.out_c) : npos;
            blk.shift = batch_norm_ ? add_params(blk.out_c) : npos;
            blk.scale = batch_norm_scale_ ? add_params(blk.out_c) : npos;
            blocks_.push_back(blk);
            c = blk.out_c, h = blk.out_h, w = blk.out_w;
        }
        features_ = head_ == Head::average ? c : checked_product({c, h, w}, "the flattened features");
        dense_weight_ = add_params(checked_product({features_, outputs_}, "the output layer's weights"));
        dense_bias_ = bias_ ? add_params(outputs_) : npos;
    }

    static constexpr std::size_t npos = std::size_t(-1);

    const std::vector<ConvBlock>& blocks() const { return blocks_; }
    std::size_t num_blocks() const { return blocks_.size(); }
    std::size_t input_values() const { return input_values_; }  // C H W
    std::size_t outputs() const { return outputs_; }
    std::size_t features() const { return features_; }
    std::size_t num_params() const { return num_params_; }
    std::size_t kernel_size() const { return k_; }
    std::size_t stride() const { return stride_; }
    bool pool() const { return pool_; }
    bool batch_norm() const { return batch_norm_; }
    bool batch_norm_scale() const { return batch_norm_scale_; }
    double batch_norm_eps() const { return eps_; }
    Activation activation() const { return activation_; }
    Head head() const { return head_; }
    Padding padding() const { return padding_; }
    bool bias() const { return bias_; }
    std::size_t dense_weight() const { return dense_weight_; }
    std::size_t dense_bias() const { return dense_bias_; }
    std::size_t patch_width(const ConvBlock& b) const { return b.in_c * k_ * k_; }  // C k k

    // The network concept (network.hpp): rows are images of C H W values, the output is linear.
    std::size_t input_width() const { return input_values_; }
    std::size_t output_width() const { return outputs_; }
    Activation output_activation() const { return Activation::identity; }
    static constexpr bool caches_transposed_weights = false;

private:
    static void check_size(std::size_t value, const char* name) {
        if (value == 0 || value > max_size_allowed)
            throw std::invalid_argument(std::string(name) + " must lie in [1, " + std::to_string(max_size_allowed) +
                                        "], got " + std::to_string(value));
    }

    // The product of sizes each <= 2^24, refused beyond max_values_allowed (checked per factor,
    // so the product itself never overflows).
    static std::size_t checked_product(std::initializer_list<std::size_t> sizes, const std::string& what) {
        std::size_t n = 1;
        for (std::size_t s : sizes) {
            if (n > max_values_allowed / s)
                throw std::invalid_argument(what + " has more than " + std::to_string(max_values_allowed) +
                                            " values per row");
            n *= s;
        }
        return n;
    }

    std::size_t add_params(std::size_t n) {
        const std::size_t offset = num_params_;
        num_params_ += n;  // n <= 2^40 and num_params_ <= 2^36 before: no overflow
        if (num_params_ > max_params_allowed)
            throw std::invalid_argument("the network has more than " + std::to_string(max_params_allowed) +
                                        " parameters");
        return offset;
    }

    // Output size and padding of a convolution along one axis of size n (docs/math.md §5.1).
    void axis(std::size_t n, std::size_t& out, std::size_t& before, std::size_t& after) const {
        if (padding_ == Padding::same) {
            out = (n + stride_ - 1) / stride_;
            const std::size_t reach = (out - 1) * stride_ + k_;  // < 2^49
            const std::size_t total = reach > n ? reach - n : 0;
            before = total / 2, after = total - total / 2;
        } else {
            out = n >= k_ ? (n - k_) / stride_ + 1 : 0;
            before = after = 0;
        }
    }

    std::vector<std::size_t> channels_;
    std::size_t outputs_, k_, stride_;
    Padding padding_;
    bool pool_, batch_norm_, batch_norm_scale_;
    double eps_;
    Activation activation_;
    Head head_;
    bool bias_;
    std::vector<ConvBlock> blocks_;
    std::size_t input_values_ = 0, features_ = 0, num_params_ = 0, dense_weight_ = 0, dense_bias_ = npos;
};

// Scratch memory for one evaluation on `rows` rows, sized once per call shape.
template <class T>
struct ConvNetWorkspace {
    struct Block {
        Buffer<T> cols, z, xhat, a, out;         // forward (out: after the pool; a without one)
        Buffer<T> mean, sigma;                   // batch statistics, per channel
        Buffer<std::uint8_t> index;              // max-pool's selected window entry
        Buffer<T> rcols, rz, rxhat, ry, ra, rout, rsigma;  // R-forward
        Buffer<T> kp, up;  // the kernels K and U in the patches' column order
    };
    std::vector<Block> blocks;
    Buffer<T> h, z, rh, rz;                 // head features and logits, and R of them
    Buffer<T> delta, rdelta;                // dL/dz of the logits, and R
    Buffer<T> g[2], rg[2];                  // dL/d(an image), and R, ping-pong
    Buffer<T> dcols, rdcols;                // dL/dP, and R
    Buffer<T> scratch;                      // gemm_nt's transposed weights; a kernel's gradient
    Buffer<T> gh, rgh;                      // dL/dh, and R
    Buffer<T> sums[16];                     // per-channel sums and coefficients
    std::size_t rows = 0;

    void reserve(const ConvNet& net, std::size_t n, bool with_r_operator) {
        if (n > max_rows(net))
            throw std::invalid_argument("a batch of " + std::to_string(n) + " rows needs more than " +
                                        std::to_string(ConvNet::max_values_allowed) + " values per tensor");
        rows = n;
        blocks.resize(net.num_blocks());
        each_buffer(net, n, with_r_operator, blocks.data(), [](auto& buffer, std::size_t values) {
            grow_exactly(buffer, values);
        });
    }

    // Bytes reserve(net, n, with_r_operator) allocates in an empty workspace (the memory checks'
    // estimate, from the sizes reserve uses); the largest size_t for a batch reserve refuses.
    static std::size_t bytes(const ConvNet& net, std::size_t n, bool with_r_operator) {
        if (n > max_rows(net)) return std::size_t(-1);
        std::size_t total = 0;
        ConvNetWorkspace counting;
        counting.each_buffer(net, n, with_r_operator, nullptr, [&](auto& buffer, std::size_t values) {
            total += values * sizeof(*buffer.data());
        });
        return total + net.num_blocks() * sizeof(Block);
    }

    // Bytes the buffers hold now.
    std::size_t allocated_bytes() const {
        std::size_t total = blocks.capacity() * sizeof(Block);
        auto add = [&](const auto& buffer) { total += buffer.capacity() * sizeof(*buffer.data()); };
        for (const Block& w : blocks)
            for (const auto* buffer : {&w.cols, &w.z, &w.xhat, &w.a, &w.out, &w.mean, &w.sigma, &w.rcols, &w.rz,
                                       &w.rxhat, &w.ry, &w.ra, &w.rout, &w.rsigma, &w.kp, &w.up})
                add(*buffer);
        for (const Block& w : blocks) add(w.index);
        for (const auto* buffer : {&h, &z, &rh, &rz, &delta, &rdelta, &g[0], &g[1], &rg[0], &rg[1], &dcols, &rdcols,
                                   &scratch, &gh, &rgh})
            add(*buffer);
        for (const auto& s : sums) add(s);
        return total;
    }

private:
    // Calls each(buffer, values) for every buffer of a pass over n rows: the one list of sizes
    // that reserve grows to and bytes adds up. per_block: the blocks' buffers (null: a scratch
    // Block for every block, when only counting).
    template <class Each>
    void each_buffer(const ConvNet& net, std::size_t n, bool with_r_operator, Block* per_block, Each&& each) {
        Block unused;
        std::size_t widest_image = n * net.input_values(), widest_cols = 0, widest_weights = net.features() * net.outputs();
        std::size_t widest_channels = 1;
        for (std::size_t b = 0; b < net.num_blocks(); ++b) {
            const ConvBlock& g_ = net.blocks()[b];
            Block& w = per_block ? per_block[b] : unused;
            const std::size_t pixels = n * g_.conv_h * g_.conv_w;
            const std::size_t cols = pixels * net.patch_width(g_), image = pixels * g_.out_c;
            const std::size_t pooled = n * g_.out_h * g_.out_w * g_.out_c;
            const std::size_t kernel = g_.out_c * net.patch_width(g_);
            each(w.cols, cols);
            each(w.kp, kernel);
            each(w.z, image);
            each(w.a, image);
            each(w.mean, g_.out_c);
            each(w.sigma, g_.out_c);
            if (net.batch_norm()) each(w.xhat, image);
            if (net.pool()) {
                each(w.out, pooled);
                each(w.index, pooled);
            }
            if (with_r_operator) {
                if (b > 0) each(w.rcols, cols);
                each(w.up, kernel);
                each(w.rz, image);
                each(w.ry, image);
                each(w.ra, image);
                each(w.rsigma, g_.out_c);
                if (net.batch_norm()) each(w.rxhat, image);
                if (net.pool()) each(w.rout, pooled);
            }
            widest_image = std::max(widest_image, image);
            widest_cols = std::max(widest_cols, cols);
            widest_weights = std::max(widest_weights, g_.out_c * net.patch_width(g_));
            widest_channels = std::max(widest_channels, g_.out_c);
        }
        each(h, n * net.features());
        each(z, n * net.outputs());
        each(delta, n * net.outputs());
        each(gh, n * net.features());
        for (auto& s : sums) each(s, widest_channels);
        each(scratch, widest_weights);
        for (auto& buffer : g) each(buffer, widest_image);
        each(dcols, widest_cols);
        if (with_r_operator) {
            each(rh, n * net.features());
            each(rz, n * net.outputs());
            each(rdelta, n * net.outputs());
            each(rgh, n * net.features());
            for (auto& buffer : rg) each(buffer, widest_image);
            each(rdcols, widest_cols);
        }
    }

    // The most rows a pass may take: every tensor within max_values_allowed / 64 values.
    static std::size_t max_rows(const ConvNet& net) { return ConvNet::max_values_allowed / 64 / largest_per_row(net); }

    static std::size_t largest_per_row(const ConvNet& net) {
        std::size_t most = std::max<std::size_t>(net.input_values(), net.features() + net.outputs());
        for (const ConvBlock& b : net.blocks())
            most = std::max({most, b.conv_h * b.conv_w * net.patch_width(b), b.conv_h * b.conv_w * b.out_c});
        return most;
    }
};

template <class T>
struct WorkspaceOf<ConvNet, T> {
    using type = ConvNetWorkspace<T>;
};

namespace convnet {

// Strides of an image in memory: element (n, c, i, j) at n*row + c*channel + i*line + j*pixel.
struct Strides {
    std::size_t row, channel, line, pixel;
};

inline Strides nchw(std::size_t c, std::size_t h, std::size_t w) { return {c * h * w, h * w, w, 1}; }
inline Strides nhwc(std::size_t c, std::size_t h, std::size_t w) { return {h * w * c, 1, w * c, c}; }

// P = im2col(x) (docs/math.md §5.2): P[(n, i, j), (p, q, c)] = x_pad[n, c, i s + p, j s + q]. The
// columns run over (p, q, c), channels fastest, where §5.2 orders them (c, p, q): a column
// permutation of P, matched by the kernels' (permute_kernel), so that a patch's channels are
// one contiguous copy from an (H W, C) image.
template <class T>
void im2col(const ConvNet& net, const ConvBlock& b, std::size_t rows, const T* x, Strides st, T* cols) {
    const std::size_t k = net.kernel_size(), s = net.stride(), width = net.patch_width(b), C = b.in_c;
    for (std::size_t n = 0; n < rows; ++n)
        for (std::size_t i = 0; i < b.conv_h; ++i)
            for (std::size_t j = 0; j < b.conv_w; ++j) {
                T* row = cols + ((n * b.conv_h + i) * b.conv_w + j) * width;
                for (std::size_t p = 0; p < k; ++p) {
                    const std::size_t hi = i * s + p;  // in padded coordinates
                    const bool row_inside = hi >= b.pad_top && hi - b.pad_top < b.in_h;
                    for (std::size_t q = 0; q < k; ++q) {
                        const std::size_t wj = j * s + q;
                        T* dst = row + (p * k + q) * C;
                        if (!row_inside || wj < b.pad_left || wj - b.pad_left >= b.in_w) {
                            std::fill(dst, dst + C, T(0));
                            continue;
                        }
                        const T* src = x + n * st.row + (hi - b.pad_top) * st.line + (wj - b.pad_left) * st.pixel;
                        if (st.channel == 1) std::copy(src, src + C, dst);
                        else
                            for (std::size_t c = 0; c < C; ++c) dst[c] = src[c * st.channel];
                    }
                }
            }
}

// dx = col2im(M), the adjoint of im2col (docs/math.md §5.2), into an (rows H W, C) image.
template <class T>
void col2im(const ConvNet& net, const ConvBlock& b, std::size_t rows, const T* cols, T* dx) {
    const std::size_t k = net.kernel_size(), s = net.stride(), width = net.patch_width(b), C = b.in_c;
    std::fill(dx, dx + rows * b.in_h * b.in_w * C, T(0));
    for (std::size_t n = 0; n < rows; ++n)
        for (std::size_t i = 0; i < b.conv_h; ++i)
            for (std::size_t j = 0; j < b.conv_w; ++j) {
                const T* row = cols + ((n * b.conv_h + i) * b.conv_w + j) * width;
                for (std::size_t p = 0; p < k; ++p) {
                    const std::size_t hi = i * s + p;
                    if (hi < b.pad_top || hi - b.pad_top >= b.in_h) continue;
                    for (std::size_t q = 0; q < k; ++q) {
                        const std::size_t wj = j * s + q;
                        if (wj < b.pad_left || wj - b.pad_left >= b.in_w) continue;
                        T* dst = dx + ((n * b.in_h + hi - b.pad_top) * b.in_w + wj - b.pad_left) * C;
                        const T* src = row + (p * k + q) * C;
                        for (std::size_t c = 0; c < C; ++c) dst[c] += src[c];
                    }
                }
            }
}

// A kernel K (O, C, k, k), theta's order, in the patches' column order (p, q, c): kp (O x kkC).
template <class T>
void permute_kernel(const ConvNet& net, const ConvBlock& b, const T* K, T* kp) {
    const std::size_t kk = net.kernel_size() * net.kernel_size(), C = b.in_c, O = b.out_c, width = kk * C;
    for (std::size_t o = 0; o < O; ++o)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t pq = 0; pq < kk; ++pq) kp[o * width + pq * C + c] = K[(o * C + c) * kk + pq];
}

// The inverse for a gradient: g (O x kkC) in the patches' order to out (O, C, k, k), theta's.
template <class T>
void unpermute_kernel(const ConvNet& net, const ConvBlock& b, const T* g, T* out) {
    const std::size_t kk = net.kernel_size() * net.kernel_size(), C = b.in_c, O = b.out_c, width = kk * C;
    for (std::size_t o = 0; o < O; ++o)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t pq = 0; pq < kk; ++pq) out[(o * C + c) * kk + pq] = g[o * width + pq * C + c];
}

// s1[c] = sum_r A[r, c] and, with B, s2[c] = sum_r A[r, c] B[r, c] (rows m, channels n).
template <class T>
void channel_sums(std::size_t m, std::size_t n, const T* A, const T* B, T* s1, T* s2) {
    std::fill(s1, s1 + n, T(0));
    if (B) std::fill(s2, s2 + n, T(0));
    for (std::size_t r = 0; r < m; ++r) {
        const T* a = A + r * n;
        for (std::size_t c = 0; c < n; ++c) s1[c] += a[c];
        if (B) {
            const T* bb = B + r * n;
            for (std::size_t c = 0; c < n; ++c) s2[c] += a[c] * bb[c];
        }
    }
}

template <class T>
T param(const T* theta, std::size_t offset, std::size_t c, T absent) {
    return offset == ConvNet::npos ? absent : theta[offset + c];
}

// activation_derivatives: the blocks keep a = phi(y), not y, and take phi'(y) and phi''(y) as
// Fn::d1(a, a) and Fn::d2(a, a): tanh's and sigmoid's read only a, identity's are constants, and
// ReLU's y > 0 is a > 0 (a = max(y, 0)), so the values are those of (y, a).

// One 2x2 window's entries in row-major order (docs/math.md §5.5), as offsets in an (H W, C) image.
inline void window(std::size_t conv_w, std::size_t c_count, std::size_t i, std::size_t j, std::size_t* at) {
    const std::size_t top = (2 * i * conv_w + 2 * j) * c_count, bottom = top + conv_w * c_count;
    at[0] = top, at[1] = top + c_count, at[2] = bottom, at[3] = bottom + c_count;
}

// out = a[pi] per row and channel; with select, pi is chosen first (first maximum).
template <class T>
void pool_gather(const ConvBlock& b, std::size_t rows, const T* a, std::uint8_t* index, bool select, T* out) {
    const std::size_t C = b.out_c;
    for (std::size_t n = 0; n < rows; ++n)
        for (std::size_t i = 0; i < b.out_h; ++i)
            for (std::size_t j = 0; j < b.out_w; ++j) {
                std::size_t at[4];
                window(b.conv_w, C, i, j, at);
                const T* src = a + n * b.conv_h * b.conv_w * C;
                const std::size_t o = ((n * b.out_h + i) * b.out_w + j) * C;
                for (std::size_t c = 0; c < C; ++c) {
                    if (select) {
                        std::uint8_t best = 0;
                        for (std::uint8_t e = 1; e < 4; ++e)
                            if (src[at[e] + c] > src[at[best] + c]) best = e;  // ties keep the first
                        index[o + c] = best;
                    }
                    out[o + c] = src[at[index[o + c]] + c];
                }
            }
}

// The adjoint of pool_gather: g to each window's selected entry, 0 elsewhere.
template <class T>
void pool_scatter(const ConvBlock& b, std::size_t rows, const T* g, const std::uint8_t* index, T* full) {
    const std::size_t C = b.out_c;
    std::fill(full, full + rows * b.conv_h * b.conv_w * C, T(0));
    for (std::size_t n = 0; n < rows; ++n)
        for (std::size_t i = 0; i < b.out_h; ++i)
            for (std::size_t j = 0; j < b.out_w; ++j) {
                std::size_t at[4];
                window(b.conv_w, C, i, j, at);
                T* dst = full + n * b.conv_h * b.conv_w * C;
                const std::size_t o = ((n * b.out_h + i) * b.out_w + j) * C;
                for (std::size_t c = 0; c < C; ++c) dst[at[index[o + c]] + c] = g[o + c];
            }
}

// Head (docs/math.md §5.6): an (rows H W, C) image to features (rows, F).
template <class T>
void head_forward(const ConvNet& net, const ConvBlock& b, std::size_t rows, const T* image, T* h) {
    const std::size_t C = b.out_c, pixels = b.out_h * b.out_w;
    if (net.head() == Head::average) {
        const T inverse = T(1) / T(pixels);
        for (std::size_t n = 0; n < rows; ++n) {
            T* hr = h + n * C;
            std::fill(hr, hr + C, T(0));
            for (std::size_t p = 0; p < pixels; ++p)
                for (std::size_t c = 0; c < C; ++c) hr[c] += image[(n * pixels + p) * C + c];
            for (std::size_t c = 0; c < C; ++c) hr[c] *= inverse;
        }
    } else {
        for (std::size_t n = 0; n < rows; ++n)
            for (std::size_t p = 0; p < pixels; ++p)
                for (std::size_t c = 0; c < C; ++c) h[(n * C + c) * pixels + p] = image[(n * pixels + p) * C + c];
    }
}

// The head's adjoint: features (rows, F) to an (rows H W, C) image.
template <class T>
void head_backward(const ConvNet& net, const ConvBlock& b, std::size_t rows, const T* gh, T* image) {
    const std::size_t C = b.out_c, pixels = b.out_h * b.out_w;
    for (std::size_t n = 0; n < rows; ++n)
        for (std::size_t p = 0; p < pixels; ++p)
            for (std::size_t c = 0; c < C; ++c)
                image[(n * pixels + p) * C + c] = net.head() == Head::average ? gh[n * C + c] / T(pixels)
                                                                               : gh[(n * C + c) * pixels + p];
}

}  // namespace convnet

// Forward pass over x (rows, C, H, W) in C order; returns the logits (rows x outputs) in ws.
// Batch norm takes its statistics from the first `statistics_rows` rows (0: all of them, as
// training does; fewer: the support rows ahead of query rows, docs/math.md §5.3).
template <class T>
const T* forward(const ConvNet& net, const T* theta, const T* x, std::size_t rows, ConvNetWorkspace<T>& ws,
                 std::size_t statistics_rows = 0) {
    using namespace convnet;
    const T* input = x;
    Strides st = nchw(net.blocks()[0].in_c, net.blocks()[0].in_h, net.blocks()[0].in_w);
    for (std::size_t l = 0; l < net.num_blocks(); ++l) {
        const ConvBlock& b = net.blocks()[l];
        auto& w = ws.blocks[l];
        const std::size_t pixels = rows * b.conv_h * b.conv_w, width = net.patch_width(b), O = b.out_c;
        const std::size_t n = pixels * O;
        // §5.2: Z = P K^T + b.
        im2col(net, b, rows, input, st, w.cols.data());
        permute_kernel(net, b, theta + b.weight, w.kp.data());
        kernels::gemm_nt(pixels, O, width, w.cols.data(), w.kp.data(), w.z.data(), false, ws.scratch.data());
        if (b.bias != ConvNet::npos) kernels::add_row_vector(pixels, O, theta + b.bias, w.z.data());
        // §5.3: batch norm with this batch's statistics (biased variance).
        if (net.batch_norm()) {
            T* mean = w.mean.data();
            T* sigma = w.sigma.data();
            const std::size_t counted = statistics_rows == 0 ? pixels : statistics_rows * b.conv_h * b.conv_w;
            channel_sums<T>(counted, O, w.z.data(), nullptr, mean, nullptr);
            for (std::size_t c = 0; c < O; ++c) mean[c] /= T(counted);
            T* var = ws.sums[0].data();
            std::fill(var, var + O, T(0));
            for (std::size_t r = 0; r < counted; ++r)
                for (std::size_t c = 0; c < O; ++c) {
                    const T d = w.z[r * O + c] - mean[c];
                    var[c] += d * d;
                }
            // Per channel first, so that the loop over the image is a vectorisable multiply-add.
            T* inverse = ws.sums[1].data();
            T* gamma = ws.sums[2].data();
            for (std::size_t c = 0; c < O; ++c) {
                sigma[c] = std::sqrt(var[c] / T(counted) + T(net.batch_norm_eps()));
                inverse[c] = T(1) / sigma[c];
                gamma[c] = param(theta, b.scale, c, T(1));
            }
            // y, then §5.4's activation in place, row by row while the row is in cache (the same
            // arithmetic per element as one pass over the image). y itself is not kept: every
            // activation's derivatives are functions of a (activation_derivatives).
            const T* beta = theta + b.shift;
            for (std::size_t r = 0; r < pixels; ++r) {
                const T* z = w.z.data() + r * O;
                T* xhat = w.xhat.data() + r * O;
                T* y = w.a.data() + r * O;
                for (std::size_t c = 0; c < O; ++c) {
                    const T xh = (z[c] - mean[c]) * inverse[c];
                    xhat[c] = xh;
                    y[c] = gamma[c] * xh + beta[c];
                }
                activate(net.activation(), O, y, y);
            }
        } else {
            activate(net.activation(), n, w.z.data(), w.a.data());  // §5.4, y = z
        }
        // §5.5 max-pool.
        if (net.pool()) pool_gather(b, rows, w.a.data(), w.index.data(), true, w.out.data());
        input = net.pool() ? w.out.data() : w.a.data();
        st = nhwc(O, b.out_h, b.out_w);
    }
    // §5.6 head, §5.7 output layer.
    const ConvBlock& last = net.blocks().back();
    head_forward(net, last, rows, input, ws.h.data());
    kernels::gemm_nn(rows, net.outputs(), net.features(), ws.h.data(), theta + net.dense_weight(), ws.z.data(), false);
    if (net.bias()) kernels::add_row_vector(rows, net.outputs(), theta + net.dense_bias(), ws.z.data());
    return ws.z.data();
}

// Mean loss of the forward pass in ws; writes dL/dz to delta when it is not null.
template <class T>
T loss_of_forward(const ConvNet& net, std::size_t rows, const Targets<T>& y, Loss loss, ConvNetWorkspace<T>& ws,
                  T* delta, bool want_value = true) {
    return loss_and_seed(loss, Activation::identity, rows, net.outputs(), ws.z.data(), ws.z.data(), y, delta,
                         want_value);
}

// The logits of the forward pass in ws (rows x outputs).
template <class T>
const T* logits(const ConvNet&, const ConvNetWorkspace<T>& ws) {
    return ws.z.data();
}

template <class T>
T loss_value(const ConvNet& net, const T* theta, const T* x, std::size_t rows, const Targets<T>& y, Loss loss,
             ConvNetWorkspace<T>& ws) {
    ws.reserve(net, rows, false);
    forward(net, theta, x, rows, ws);
    return loss_of_forward(net, rows, y, loss, ws, static_cast<T*>(nullptr));
}

// Backward pass and, with v, R-backward (docs/math.md §5.8): from ws.delta (and ws.rdelta) after
// forward (and r_forward); writes the gradient to grad (may be null with v) and H v to hv.
template <class T>
void backward_passes(const ConvNet& net, const T* theta, std::size_t rows, const T* v,
                     ConvNetWorkspace<T>& ws, T* grad, T* hv) {
    using namespace convnet;
    const bool r = v != nullptr;
    const std::size_t F = net.features(), m = net.outputs();
    const T* delta = ws.delta.data();
    const T* rdelta = r ? ws.rdelta.data() : nullptr;
    // §5.7: grad W = h^T delta, grad b = sum delta, dL/dh = delta W^T; and their R.
    if (grad) {
        kernels::gemm_tn(rows, m, F, ws.h.data(), delta, grad + net.dense_weight(), false);
        if (net.bias()) kernels::column_sums(rows, m, delta, grad + net.dense_bias(), false);
    }
    T* gh = ws.gh.data();
    T* rgh = r ? ws.rgh.data() : nullptr;
    if (r) {
        kernels::gemm_tn(rows, m, F, ws.rh.data(), delta, hv + net.dense_weight(), false);
        kernels::gemm_tn(rows, m, F, ws.h.data(), rdelta, hv + net.dense_weight(), true);
        if (net.bias()) kernels::column_sums(rows, m, rdelta, hv + net.dense_bias(), false);
        kernels::gemm_nt(rows, F, m, rdelta, theta + net.dense_weight(), rgh, false, ws.scratch.data());
        kernels::gemm_nt(rows, F, m, delta, v + net.dense_weight(), rgh, true, ws.scratch.data());
    }
    kernels::gemm_nt(rows, F, m, delta, theta + net.dense_weight(), gh, false, ws.scratch.data());
    // §5.6: back to the last block's output image.
    int cur = 0;
    head_backward(net, net.blocks().back(), rows, gh, ws.g[cur].data());
    if (r) head_backward(net, net.blocks().back(), rows, rgh, ws.rg[cur].data());

    for (std::size_t l = net.num_blocks(); l-- > 0;) {
        const ConvBlock& b = net.blocks()[l];
        auto& w = ws.blocks[l];
        const std::size_t pixels = rows * b.conv_h * b.conv_w, width = net.patch_width(b), O = b.out_c;
        const std::size_t n = pixels * O;
        T* g = ws.g[cur].data();
        T* rg = r ? ws.rg[cur].data() : nullptr;
        T* g2 = ws.g[1 - cur].data();
        T* rg2 = r ? ws.rg[1 - cur].data() : nullptr;
        // §5.5: scatter to the selected entries (the selection is fixed: R commutes with it).
        if (net.pool()) {
            pool_scatter(b, rows, g, w.index.data(), g2);
            if (r) pool_scatter(b, rows, rg, w.index.data(), rg2);
            std::swap(g, g2);
            std::swap(rg, rg2);
        }
        // §5.4: dL/dy = g phi'(y); R(dL/dy) = R(g) phi'(y) + g phi''(y) R(y); phi' and phi'' from a.
        visit(net.activation(), [&](auto f) {
            using Fn = decltype(f);
            const T* a = w.a.data();
            const T* y = a;  // activation_derivatives
            if (r) {
                const T* ry = w.ry.data();
                for (std::size_t i = 0; i < n; ++i) {
                    const T d1 = Fn::d1(y[i], a[i]);
                    rg[i] = rg[i] * d1 + g[i] * Fn::d2(y[i], a[i]) * ry[i];
                    g[i] *= d1;
                }
            } else {
                for (std::size_t i = 0; i < n; ++i) g[i] *= Fn::d1(y[i], a[i]);
            }
        });
        // §5.3: batch norm's gradients and dL/dz; with r, their R.
        if (net.batch_norm()) {
            T* s1 = ws.sums[0].data();
            T* s2 = ws.sums[1].data();
            const T* xhat = w.xhat.data();
            const T* sigma = w.sigma.data();
            const T M = T(pixels);
            channel_sums(pixels, O, g, xhat, s1, s2);  // sum g, sum g xhat
            if (grad) {
                std::copy(s1, s1 + O, grad + b.shift);
                if (b.scale != ConvNet::npos) std::copy(s2, s2 + O, grad + b.scale);
            }
            if (r) {
                // R(grad beta) = sum R(g), R(grad gamma) = sum (R(g) xhat + g R(xhat)); with
                // ghat = gamma g and R(ghat) = u_gamma g + gamma R(g), the means per channel are
                // mean(ghat) = gamma s1/M, m = mean(ghat xhat) = gamma s2/M,
                // mean(R(ghat)) = (u_gamma s1 + gamma t1)/M and
                // mean(R(ghat) xhat + ghat R(xhat)) = (u_gamma s2 + gamma (t2 + q))/M.
                T* t1 = ws.sums[2].data();
                T* t2 = ws.sums[3].data();
                T* q = ws.sums[4].data();
                T* unused = ws.sums[5].data();
                const T* rxhat = w.rxhat.data();
                channel_sums(pixels, O, rg, xhat, t1, t2);   // sum R(g), sum R(g) xhat
                channel_sums(pixels, O, g, rxhat, unused, q);  // sum g R(xhat)
                std::copy(t1, t1 + O, hv + b.shift);
                if (b.scale != ConvNet::npos)
                    for (std::size_t c = 0; c < O; ++c) hv[b.scale + c] = t2[c] + q[c];
                for (std::size_t c = 0; c < O; ++c) {
                    const T gamma = param(theta, b.scale, c, T(1)), u_gamma = param(v, b.scale, c, T(0));
                    t1[c] = (u_gamma * s1[c] + gamma * t1[c]) / M;
                    t2[c] = (u_gamma * s2[c] + gamma * (t2[c] + q[c])) / M;
                }
            }
            // dz = (ghat - mean(ghat) - xhat m) / sigma = A g - B - D xhat per channel, with
            // m = gamma s2/M; and R(dz) = (R(ghat) - mean(R(ghat)) - R(xhat) m
            // - xhat mean(R(ghat) xhat + ghat R(xhat)))/sigma - dz R(sigma)/sigma
            // = P1 g + P2 R(g) - P3 - P4 R(xhat) - P5 xhat - P6 dz.
            T* A = ws.sums[6].data();
            T* B = ws.sums[7].data();
            T* D = ws.sums[8].data();
            for (std::size_t c = 0; c < O; ++c) {
                const T gamma = param(theta, b.scale, c, T(1)), inverse = T(1) / sigma[c];
                A[c] = gamma * inverse;
                B[c] = gamma * s1[c] / M * inverse;
                D[c] = gamma * s2[c] / M * inverse;
            }
            if (r) {
                const T* t1 = ws.sums[2].data();
                const T* t2 = ws.sums[3].data();
                const T* rxhat = w.rxhat.data();
                const T* rsigma = w.rsigma.data();
                T* P1 = ws.sums[9].data();
                T* P5 = ws.sums[10].data();
                T* P3 = ws.sums[11].data();
                T* P6 = ws.sums[12].data();
                for (std::size_t c = 0; c < O; ++c) {
                    const T inverse = T(1) / sigma[c];
                    P1[c] = param(v, b.scale, c, T(0)) * inverse;
                    P3[c] = t1[c] * inverse;
                    P5[c] = t2[c] * inverse;
                    P6[c] = rsigma[c] * inverse;
                }
                // P2 = A (gamma/sigma) and P4 = D (m/sigma).
                for (std::size_t i = 0; i < pixels; ++i) {
                    T* gi = g + i * O;
                    T* rgi = rg + i * O;
                    const T* xi = xhat + i * O;
                    const T* rxi = rxhat + i * O;
                    for (std::size_t c = 0; c < O; ++c) {
                        const T dz = A[c] * gi[c] - B[c] - D[c] * xi[c];
                        rgi[c] = P1[c] * gi[c] + A[c] * rgi[c] - P3[c] - D[c] * rxi[c] - P5[c] * xi[c] - P6[c] * dz;
                        gi[c] = dz;
                    }
                }
            } else {
                for (std::size_t i = 0; i < pixels; ++i) {
                    T* gi = g + i * O;
                    const T* xi = xhat + i * O;
                    for (std::size_t c = 0; c < O; ++c) gi[c] = A[c] * gi[c] - B[c] - D[c] * xi[c];
                }
            }
        }
        // §5.2: grad K = delta^T P, grad b = sum delta, dL/dx = col2im(delta K); and their R:
        // R(grad K) = R(delta)^T P + delta^T R(P), R(dL/dx) = col2im(R(delta) K + delta U).
        const T* cols = w.cols.data();
        T* kernel_grad = ws.scratch.data();  // in the patches' order, then theta's
        if (grad) {
            kernels::gemm_tn(pixels, width, O, g, cols, kernel_grad, false);
            unpermute_kernel(net, b, kernel_grad, grad + b.weight);
            if (b.bias != ConvNet::npos) kernels::column_sums(pixels, O, g, grad + b.bias, false);
        }
        if (r) {
            kernels::gemm_tn(pixels, width, O, rg, cols, kernel_grad, false);
            if (l > 0) kernels::gemm_tn(pixels, width, O, g, w.rcols.data(), kernel_grad, true);
            unpermute_kernel(net, b, kernel_grad, hv + b.weight);
            if (b.bias != ConvNet::npos) kernels::column_sums(pixels, O, rg, hv + b.bias, false);
        }
        if (l == 0) break;
        const int next = net.pool() ? cur : 1 - cur;  // the buffer not holding g
        T* dcols = ws.dcols.data();
        kernels::gemm_nn(pixels, width, O, g, w.kp.data(), dcols, false);
        if (r) {
            T* rdcols = ws.rdcols.data();
            kernels::gemm_nn(pixels, width, O, rg, w.kp.data(), rdcols, false);
            kernels::gemm_nn(pixels, width, O, g, w.up.data(), rdcols, true);
            col2im(net, b, rows, rdcols, ws.rg[next].data());
        }
        col2im(net, b, rows, dcols, ws.g[next].data());
        cur = next;
    }
}

// R-forward along v from R(x) = 0 (docs/math.md §5.2 to §5.7), after forward(): fills the R buffers.
template <class T>
void r_forward(const ConvNet& net, const T* theta, const T* v, std::size_t rows, ConvNetWorkspace<T>& ws) {
    using namespace convnet;
    for (std::size_t l = 0; l < net.num_blocks(); ++l) {
        const ConvBlock& b = net.blocks()[l];
        auto& w = ws.blocks[l];
        const std::size_t pixels = rows * b.conv_h * b.conv_w, width = net.patch_width(b), O = b.out_c;
        const std::size_t n = pixels * O;
        // §5.2: R(Z) = im2col(R(x)) K^T + P U^T + c.
        permute_kernel(net, b, v + b.weight, w.up.data());
        kernels::gemm_nt(pixels, O, width, w.cols.data(), w.up.data(), w.rz.data(), false, ws.scratch.data());
        if (l > 0) {
            const ConvBlock& prev = net.blocks()[l - 1];
            const T* rx = net.pool() ? ws.blocks[l - 1].rout.data() : ws.blocks[l - 1].ra.data();
            im2col(net, b, rows, rx, nhwc(prev.out_c, prev.out_h, prev.out_w), w.rcols.data());
            kernels::gemm_nt(pixels, O, width, w.rcols.data(), w.kp.data(), w.rz.data(), true, ws.scratch.data());
        }
        if (b.bias != ConvNet::npos) kernels::add_row_vector(pixels, O, v + b.bias, w.rz.data());
        // §5.3: R(sigma) = mean(xhat R(z)), R(xhat) = (R(z) - mean(R(z)) - xhat R(sigma))/sigma,
        // R(y) = gamma R(xhat) + u_gamma xhat + u_beta.
        if (net.batch_norm()) {
            T* s1 = ws.sums[0].data();
            T* rsigma = w.rsigma.data();
            channel_sums(pixels, O, w.rz.data(), w.xhat.data(), s1, rsigma);
            const T M = T(pixels);
            T* inverse = ws.sums[1].data();
            T* gamma = ws.sums[2].data();
            T* u_gamma = ws.sums[3].data();
            for (std::size_t c = 0; c < O; ++c) {
                s1[c] /= M, rsigma[c] /= M;
                inverse[c] = T(1) / w.sigma[c];
                gamma[c] = param(theta, b.scale, c, T(1));
                u_gamma[c] = param(v, b.scale, c, T(0));
            }
            const T* u_beta = v + b.shift;
            for (std::size_t i = 0; i < pixels; ++i) {
                const T* rz = w.rz.data() + i * O;
                const T* xhat = w.xhat.data() + i * O;
                T* rxhat = w.rxhat.data() + i * O;
                T* ry = w.ry.data() + i * O;
                for (std::size_t c = 0; c < O; ++c) {
                    const T rxh = (rz[c] - s1[c] - xhat[c] * rsigma[c]) * inverse[c];
                    rxhat[c] = rxh;
                    ry[c] = gamma[c] * rxh + u_gamma[c] * xhat[c] + u_beta[c];
                }
            }
        } else {
            std::copy(w.rz.data(), w.rz.data() + n, w.ry.data());
        }
        // §5.4, §5.5.
        r_forward_through(net.activation(), n, w.a.data(), w.a.data(), w.ry.data(), w.ra.data());  // phi' from a
        if (net.pool()) pool_gather(b, rows, w.ra.data(), w.index.data(), false, w.rout.data());
    }
    // §5.6, §5.7: R(z) = R(h) W + h U + c.
    const ConvBlock& last = net.blocks().back();
    const T* rx = net.pool() ? ws.blocks.back().rout.data() : ws.blocks.back().ra.data();
    head_forward(net, last, rows, rx, ws.rh.data());
    const std::size_t F = net.features(), m = net.outputs();
    kernels::gemm_nn(rows, m, F, ws.rh.data(), theta + net.dense_weight(), ws.rz.data(), false);
    kernels::gemm_nn(rows, m, F, ws.h.data(), v + net.dense_weight(), ws.rz.data(), true);
    if (net.bias()) kernels::add_row_vector(rows, m, v + net.dense_bias(), ws.rz.data());
}

// Mean loss (0 unless want_value) and its gradient (docs/math.md §5.8); theta_t is not used
// (the network concept's argument, network.hpp).
template <class T>
T loss_and_grad(const ConvNet& net, const T* theta, const T* x, std::size_t rows, const Targets<T>& y, Loss loss,
                ConvNetWorkspace<T>& ws, T* grad, bool want_value = true, const T* /*theta_t*/ = nullptr) {
    ws.reserve(net, rows, false);
    forward(net, theta, x, rows, ws);
    const T value = loss_of_forward(net, rows, y, loss, ws, ws.delta.data(), want_value);
    backward_passes(net, theta, rows, static_cast<const T*>(nullptr), ws, grad, static_cast<T*>(nullptr));
    return value;
}

// H v by the R-operator (docs/math.md §5.8); the gradient too when grad is not null; the mean
// loss (0 unless want_value). With forward_done, ws already holds forward(theta, x) and it is
// reused. theta_t is not used (network.hpp).
template <class T>
T hvp(const ConvNet& net, const T* theta, const T* x, std::size_t rows, const Targets<T>& y, Loss loss, const T* v,
      ConvNetWorkspace<T>& ws, T* hv, T* grad, bool want_value = true, bool forward_done = false,
      const T* /*theta_t*/ = nullptr) {
    ws.reserve(net, rows, true);  // keeps the contents: a forward pass already there survives
    if (!forward_done) forward(net, theta, x, rows, ws);
    r_forward(net, theta, v, rows, ws);
    const T value = loss_of_forward(net, rows, y, loss, ws, ws.delta.data(), want_value);
    r_seed(loss, Activation::identity, rows, net.outputs(), ws.z.data(), ws.z.data(), y, ws.rz.data(),
           ws.rdelta.data());
    backward_passes(net, theta, rows, v, ws, grad, hv);
    return value;
}

}  // namespace metafast
