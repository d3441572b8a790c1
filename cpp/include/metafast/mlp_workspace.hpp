// Scratch memory for one MLP evaluation on up to `rows` samples. Sized once and reused, so
// forward, backprop and Hessian-vector products allocate nothing in steady state.
#pragma once

#include <cstddef>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/mlp.hpp"

namespace metafast {

template <class T>
struct MlpWorkspace {
    std::vector<Buffer<T>> z, a;    // per layer: pre-activations and activations
    std::vector<Buffer<T>> rz, ra;  // per layer: their R-operator directional derivatives
    Buffer<T> delta[2], rdelta[2];  // dL/dz of the current and the previous layer, and R of them
    Buffer<T> back;                 // delta W^T before multiplying by f' (needed by R(delta))
    Buffer<T> transposed;           // a weight matrix transposed, for products with W^T

    // Grows the buffers to hold `rows` samples of `mlp`; never shrinks, so a reused
    // workspace allocates only when it meets a larger batch than before.
    void reserve(const Mlp& mlp, std::size_t rows, bool with_r_operator) {
        const std::size_t layers = mlp.num_layers();
        grow_layers(z, mlp, rows);
        grow_layers(a, mlp, rows);
        if (with_r_operator) {
            grow_layers(rz, mlp, rows);
            grow_layers(ra, mlp, rows);
        }
        const std::size_t widest = rows * mlp.max_width();
        for (int i = 0; i < 2; ++i) {
            grow(delta[i], widest);
            if (with_r_operator) grow(rdelta[i], widest);
        }
        if (layers > 1) {
            grow(back, widest);
            grow(transposed, mlp.max_layer_params());
        }
    }

private:
    static void grow(Buffer<T>& v, std::size_t n) {
        if (v.size() < n) v.resize(n);
    }
    static void grow_layers(std::vector<Buffer<T>>& per_layer, const Mlp& mlp,
                            std::size_t rows) {
        if (per_layer.size() < mlp.num_layers()) per_layer.resize(mlp.num_layers());
        for (std::size_t l = 0; l < mlp.num_layers(); ++l) grow(per_layer[l], rows * mlp.fan_out(l));
    }
};

}  // namespace metafast
