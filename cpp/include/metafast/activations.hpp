// Elementwise activations with their first and second derivatives.
// Each activation is a tag type so loops are specialised at compile time: the switch on
// the runtime choice happens once per loop, never per element.
#pragma once

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

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

struct Tanh {
    template <class T> static T value(T z) { return std::tanh(z); }
    template <class T> static T d1(T, T a) { return T(1) - a * a; }
    template <class T> static T d2(T, T a) { return T(-2) * a * (T(1) - a * a); }
};

struct Sigmoid {
    // Written so that neither branch overflows: exp of a non-positive number only.
    template <class T> static T value(T z) {
        if (z >= T(0)) return T(1) / (T(1) + std::exp(-z));
        const T e = std::exp(z);
        return e / (T(1) + e);
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

// a = f(z) elementwise (a may alias z).
template <class T>
void activate(Activation act, std::size_t n, const T* z, T* a) {
    visit(act, [&](auto f) {
        using F = decltype(f);
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

// The R-operator's backward step through an activation (math.md section 2):
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
