// Elementwise activations with their first and second derivatives.
// Each activation is a tag type so loops are specialised at compile time: the switch on
// the runtime choice happens once per loop, never per element.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "metafast/fast_math.hpp"

namespace metafast {

enum class Activation { identity, tanh, sigmoid, relu };

inline Activation parse_activation(std::string_view name, std::string_view argument) {
    if (name == "identity" || name == "linear") return Activation::identity;
    if (name == "tanh") return Activation::tanh;
    if (name == "sigmoid") return Activation::sigmoid;
    if (name == "relu") return Activation::relu;
    throw std::invalid_argument(std::string(argument) + " must be one of 'identity', 'tanh', "
                                "'sigmoid', 'relu', got '" + std::string(name) + "'");
}

inline const char* activation_name(Activation act) {
    switch (act) {
        case Activation::identity: return "identity";
        case Activation::tanh: return "tanh";
        case Activation::sigmoid: return "sigmoid";
        case Activation::relu: return "relu";
    }
    return "?";
}

// Derivatives are written in terms of both the pre-activation z and the output a = f(z),
// whichever is cheaper (tanh' = 1 - a^2 reuses a instead of recomputing tanh).
namespace activation {

struct Identity {
    template <class T> static T value(T z) { return z; }
    template <class T> static T d1(T, T) { return T(1); }
    template <class T> static T d2(T, T) { return T(0); }
};

// Beyond this |x|, tanh x rounds to +-1 in float32 (1 - tanh x < 2^-25): tanh returns +-1
// exactly there, so a saturated unit's derivatives 1 - a^2 and a(1 - a) are exactly 0.
constexpr float tanh_saturation = 9.010913f;

// tanh for float as a rational function (the coefficients of Eigen's fast tanh): branch-free,
// so loops over it vectorise; its error is below 7 ulp (4e-7 absolute) of the exact value.
// Doubles keep the C library's correctly rounded-in-practice tanh.
inline float rational_tanh(float x) {
    const float clamped = std::min(std::max(x, -7.90531110763549805f), 7.90531110763549805f);
    const float x2 = clamped * clamped;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    const float r = clamped * p / q;
    if (std::abs(x) > tanh_saturation) return std::copysign(1.0f, x);
    return std::abs(x) < 0.0004f ? x : r;
}

#ifdef METAFAST_VECTOR_KERNELS
// rational_tanh on a vector, its division by q (in [0.0049, 1.3]) from the reciprocal estimate
// (the divider would bound the loop: one 512-bit division per 10 cycles).
inline fast::Floats rational_tanh(fast::Floats x) {
    constexpr float limit = 7.90531110763549805f;
    // x within [-limit, limit] (NaN stays NaN): a min and a max, not two compares and blends
    const fast::Floats clamped = fast::greater(fast::Floats{} - limit, fast::lesser(fast::Floats{} + limit, x));
    const fast::Floats x2 = clamped * clamped;
    fast::Floats p = -2.76076847742355e-16f * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    fast::Floats q = 1.19825839466702e-06f * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    const fast::Floats r = clamped * p * fast::reciprocal_of_finite(q);
    // where it is used, |x| > 9: the sign of x is that of x < 0 (they differ only at -0)
    const fast::Floats value = x * x > tanh_saturation * tanh_saturation ? fast::unit_with_sign_of(x) : r;  // x2 is clamped
    return x2 < 1.6e-7f ? x : value;  // |x| < 0.0004: tanh x = x to float precision
}
#endif

struct Tanh {
    static float value(float z) { return rational_tanh(z); }
#ifdef METAFAST_VECTOR_KERNELS
    static fast::Floats value(fast::Floats z) { return rational_tanh(z); }
#endif
    static double value(double z) { return std::tanh(z); }
    template <class T> static T d1(T, T a) { return T(1) - a * a; }
    template <class T> static T d2(T, T a) { return T(-2) * a * (T(1) - a * a); }
};

struct Sigmoid {
    // float: 1/2 + tanh(z/2)/2, vectorisable. double: written so that neither branch
    // overflows (exp of a non-positive number only).
    static float value(float z) { return 0.5f + 0.5f * rational_tanh(0.5f * z); }
#ifdef METAFAST_VECTOR_KERNELS
    static fast::Floats value(fast::Floats z) { return 0.5f + 0.5f * rational_tanh(0.5f * z); }
#endif
    static double value(double z) {
        if (z >= 0.0) return 1.0 / (1.0 + std::exp(-z));
        const double e = std::exp(z);
        return e / (1.0 + e);
    }
    template <class T> static T d1(T, T a) { return a * (T(1) - a); }
    template <class T> static T d2(T, T a) { return a * (T(1) - a) * (T(1) - T(2) * a); }
};

struct Relu {
    template <class T> static T value(T z) { return z > T(0) ? z : T(0); }
    template <class T> static T d1(T z, T) { return z > T(0) ? T(1) : T(0); }
    template <class T> static T d2(T, T) { return T(0); }
};

}  // namespace activation

// Calls f(Tag{}) with the tag type of `act`.
template <class F>
decltype(auto) visit(Activation act, F&& f) {
    switch (act) {
        case Activation::tanh: return f(activation::Tanh{});
        case Activation::sigmoid: return f(activation::Sigmoid{});
        case Activation::relu: return f(activation::Relu{});
        case Activation::identity: break;
    }
    return f(activation::Identity{});
}

// a = f(z) elementwise (a may alias z). Floats go through the vector forms of tanh and sigmoid
// a vector at a time, the last one partial, so every element gets the same arithmetic.
template <class T>
void activate(Activation act, std::size_t n, const T* z, T* a) {
    visit(act, [&](auto f) {
        using F = decltype(f);
#ifdef METAFAST_VECTOR_KERNELS
        if constexpr (std::is_same_v<T, float> && (std::is_same_v<F, activation::Tanh> ||
                                                   std::is_same_v<F, activation::Sigmoid>)) {
            for (std::size_t i = 0; i < n; i += fast::float_lanes) {
                const std::size_t count = std::min(fast::float_lanes, n - i);
                fast::store_partial(a + i, count, F::value(fast::load_partial(z + i, count)));
            }
            return;
        }
#endif
        for (std::size_t i = 0; i < n; ++i) a[i] = F::value(z[i]);
    });
}

// g *= f'(z) elementwise.
template <class T>
void multiply_by_derivative(Activation act, std::size_t n, const T* z, const T* a, T* g) {
    if (act == Activation::identity) return;
    visit(act, [&](auto f) {
        using F = decltype(f);
        for (std::size_t i = 0; i < n; ++i) g[i] *= F::d1(z[i], a[i]);
    });
}

// The R-operator's backward step through an activation (docs/math.md, section 2):
// r = r * f'(z) + g * f''(z) * rz, where g is the incoming gradient before multiplying by f'.
template <class T>
void r_backward_through(Activation act, std::size_t n, const T* z, const T* a, const T* g,
                        const T* rz, T* r) {
    visit(act, [&](auto f) {
        using F = decltype(f);
        for (std::size_t i = 0; i < n; ++i)
            r[i] = r[i] * F::d1(z[i], a[i]) + g[i] * F::d2(z[i], a[i]) * rz[i];
    });
}

// ra = f'(z) * rz elementwise.
template <class T>
void r_forward_through(Activation act, std::size_t n, const T* z, const T* a, const T* rz,
                       T* ra) {
    visit(act, [&](auto f) {
        using F = decltype(f);
        for (std::size_t i = 0; i < n; ++i) ra[i] = F::d1(z[i], a[i]) * rz[i];
    });
}

}  // namespace metafast
