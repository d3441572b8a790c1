// Losses on the network output, as means over rows, with the two seeds that backpropagation
// needs: delta = dL/dz_L (gradient) and R(delta) (Hessian-vector product, docs/math.md, section 2).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "metafast/activations.hpp"
#include "metafast/softplus.hpp"

namespace metafast {

// mse: sum of squared errors / (rows * outputs), on the output activation's values.
// bce: binary cross-entropy on logits z_L, summed over outputs, mean over rows; the output
//      activation is identity (z_L are logits) or sigmoid (the model outputs probabilities,
//      and the loss still works on z_L so it stays finite when they saturate).
// softmax_ce: softmax cross-entropy on logits z_L with integer labels, mean over rows.
enum class Loss { mse, bce, softmax_ce };

inline Loss parse_loss(std::string_view name) {
    if (name == "mse") return Loss::mse;
    if (name == "bce") return Loss::bce;
    if (name == "softmax_ce") return Loss::softmax_ce;
    throw std::invalid_argument("loss must be one of 'mse', 'bce', 'softmax_ce', got '" +
                                std::string(name) + "'");
}

inline bool uses_labels(Loss loss) { return loss == Loss::softmax_ce; }

inline void check_loss_matches_output(Loss loss, Activation output, std::size_t width) {
    const std::string out = activation_name(output);
    if (loss == Loss::bce && output != Activation::identity && output != Activation::sigmoid)
        throw std::invalid_argument("loss 'bce' needs output activation 'identity' (logits) or "
                                    "'sigmoid', got '" + out + "'");
    if (loss == Loss::softmax_ce && output != Activation::identity)
        throw std::invalid_argument("loss 'softmax_ce' works on logits and needs output "
                                    "activation 'identity', got '" + out + "'");
    if (loss == Loss::softmax_ce && width < 2)
        throw std::invalid_argument("loss 'softmax_ce' needs an output width of at least 2 "
                                    "(one logit per class), got " + std::to_string(width));
}

// Regression or binary targets (rows x outputs) or integer class labels (rows): one of the two.
template <class T>
struct Targets {
    const T* values = nullptr;
    const std::int64_t* labels = nullptr;
};

namespace detail {

template <class T>
T stable_sigmoid(T z) { return activation::Sigmoid::value(z); }

// log(1 + exp(-|z|)) + max(z, 0) - z*y, the logits form that never overflows.
template <class T>
T bce_on_logit(T z, T y) {
    return std::max(z, T(0)) - z * y + std::log1p(std::exp(-std::abs(z)));
}

// The sum over i < n of bce_on_logit(z[i], y[i]), in index order and in double. Float logits
// go through whole vectors of doubles (softplus.hpp) instead of one expf and log1pf each.
template <class T>
double bce_total(std::size_t n, const T* z, const T* y) {
    double total = 0.0;
    std::size_t i = 0;
#ifdef METAFAST_VECTOR_KERNELS
    if constexpr (std::is_same_v<T, float>) {
        using softplus::Doubles;
        constexpr std::size_t L = box_muller::lanes;
        for (; i < n; i += L) {
            const std::size_t count = std::min(L, n - i);
            Doubles zi{}, yi{};
            for (std::size_t l = 0; l < count; ++l) zi[l] = double(z[i + l]), yi[l] = double(y[i + l]);
            const Doubles term = (zi > 0.0 ? zi : Doubles{}) - zi * yi + softplus::log1p_exp_minus_abs(zi);
            for (std::size_t l = 0; l < count; ++l) total += term[l];
        }
    }
#endif
    for (; i < n; ++i) total += double(bce_on_logit(z[i], y[i]));
    return total;
}

}  // namespace detail

// Returns the mean loss of outputs (z, a) = (z_L, f(z_L)), both rows x width. When `delta`
// is not null, also writes dL/dz_L there. Sums run in row order and in double precision.
// With want_value false only delta is computed (inner loops never read their losses) and the
// result is 0.
template <class T>
T loss_and_seed(Loss loss, Activation output, std::size_t rows, std::size_t width, const T* z,
                const T* a, const Targets<T>& y, T* delta, bool want_value = true) {
    double total = 0.0;
    const std::size_t n = rows * width;
    switch (loss) {
        case Loss::mse: {
            const T scale = T(2) / T(n);
            for (std::size_t i = 0; i < n; ++i) {
                const T e = a[i] - y.values[i];
                total += double(e) * double(e);
                if (delta) delta[i] = scale * e;
            }
            if (delta) multiply_by_derivative(output, n, z, a, delta);
            return T(total / double(n));
        }
        case Loss::bce: {
            const T scale = T(1) / T(rows);
            if (want_value) total = detail::bce_total(n, z, y.values);
            if (delta)
                for (std::size_t i = 0; i < n; ++i) delta[i] = scale * (detail::stable_sigmoid(z[i]) - y.values[i]);
            return T(total / double(rows));
        }
        case Loss::softmax_ce: {
            const T scale = T(1) / T(rows);
            for (std::size_t r = 0; r < rows; ++r) {
                const T* zr = z + r * width;
                const T zmax = *std::max_element(zr, zr + width);
                T sum = 0;
                for (std::size_t j = 0; j < width; ++j) sum += std::exp(zr[j] - zmax);
                const auto label = static_cast<std::size_t>(y.labels[r]);
                total += double(zmax + std::log(sum) - zr[label]);
                if (delta) {
                    T* dr = delta + r * width;
                    for (std::size_t j = 0; j < width; ++j)
                        dr[j] = scale * (std::exp(zr[j] - zmax) / sum - (j == label ? T(1) : T(0)));
                }
            }
            return T(total / double(rows));
        }
    }
    return T(0);
}

// R(delta) for a direction whose effect on the logits is rz = R(z_L).
template <class T>
void r_seed(Loss loss, Activation output, std::size_t rows, std::size_t width, const T* z,
            const T* a, const Targets<T>& y, const T* rz, T* rdelta) {
    const std::size_t n = rows * width;
    switch (loss) {
        case Loss::mse: {
            // delta = c (a - y) f'(z)  =>  R(delta) = c (f'^2 + (a - y) f'') R(z).
            const T scale = T(2) / T(n);
            visit(output, [&](auto f) {
                using F = decltype(f);
                for (std::size_t i = 0; i < n; ++i) {
                    const T d1 = F::d1(z[i], a[i]);
                    rdelta[i] = scale * (d1 * d1 + (a[i] - y.values[i]) * F::d2(z[i], a[i])) * rz[i];
                }
            });
            return;
        }
        case Loss::bce: {
            const T scale = T(1) / T(rows);
            for (std::size_t i = 0; i < n; ++i) {
                const T s = detail::stable_sigmoid(z[i]);
                rdelta[i] = scale * s * (T(1) - s) * rz[i];
            }
            return;
        }
        case Loss::softmax_ce: {
            // R(delta) = (s * R(z) - s (s . R(z))) / rows, row by row.
            const T scale = T(1) / T(rows);
            for (std::size_t r = 0; r < rows; ++r) {
                const T* zr = z + r * width;
                const T* rzr = rz + r * width;
                T* out = rdelta + r * width;
                const T zmax = *std::max_element(zr, zr + width);
                T sum = 0;
                for (std::size_t j = 0; j < width; ++j) sum += (out[j] = std::exp(zr[j] - zmax));
                T dot = 0;
                for (std::size_t j = 0; j < width; ++j) dot += (out[j] /= sum) * rzr[j];
                for (std::size_t j = 0; j < width; ++j) out[j] = scale * out[j] * (rzr[j] - dot);
            }
            return;
        }
    }
}

// Fraction of correct predictions: sign of the logit against y >= 0.5 for bce, argmax against
// the label for softmax_ce; NaN for mse, which has no notion of accuracy.
template <class T>
double accuracy(Loss loss, std::size_t rows, std::size_t width, const T* z, const Targets<T>& y) {
    std::size_t correct = 0;
    switch (loss) {
        case Loss::mse: return std::nan("");
        case Loss::bce:
            for (std::size_t i = 0; i < rows * width; ++i)
                correct += (z[i] > T(0)) == (y.values[i] >= T(0.5));
            return double(correct) / double(rows * width);
        case Loss::softmax_ce:
            for (std::size_t r = 0; r < rows; ++r) {
                const T* zr = z + r * width;
                const auto best = static_cast<std::int64_t>(std::max_element(zr, zr + width) - zr);
                correct += best == y.labels[r];
            }
            return double(correct) / double(rows);
    }
    return std::nan("");
}

}  // namespace metafast
