// Scratch memory for one MLP evaluation on up to `rows` samples. Sized once and reused, so
// forward, backprop and Hessian-vector products allocate nothing in steady state.
#pragma once

#include <cstddef>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/mlp.hpp"
#include "metafast/network.hpp"

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
        for (int i = 0; i < 2; ++i) {
            grow(delta[i], widest(mlp, rows));
            if (with_r_operator) grow(rdelta[i], widest(mlp, rows));
        }
        if (layers > 1) {
            grow(back, widest(mlp, rows));
            grow(transposed, mlp.max_layer_params());
        }
    }

    // Bytes reserve(mlp, rows, with_r_operator) allocates in an empty workspace (the memory
    // checks' estimate, from the sizes reserve uses).
    static std::size_t bytes(const Mlp& mlp, std::size_t rows, bool with_r_operator) {
        const std::size_t copies = with_r_operator ? 4 : 2;  // z and a, and rz and ra; delta and rdelta
        std::size_t values = copies * widest(mlp, rows);
        for (std::size_t l = 0; l < mlp.num_layers(); ++l) values += copies * layer_values(mlp, l, rows);
        if (mlp.num_layers() > 1) values += widest(mlp, rows) + mlp.max_layer_params();
        return values * sizeof(T);
    }

    // Bytes the buffers hold now.
    std::size_t allocated_bytes() const {
        std::size_t values = back.capacity() + transposed.capacity();
        for (const auto* per_layer : {&z, &a, &rz, &ra})
            for (const Buffer<T>& layer : *per_layer) values += layer.capacity();
        for (int i = 0; i < 2; ++i) values += delta[i].capacity() + rdelta[i].capacity();
        return values * sizeof(T);
    }

private:
    static void grow(Buffer<T>& v, std::size_t n) { grow_exactly(v, n); }
    static std::size_t layer_values(const Mlp& mlp, std::size_t layer, std::size_t rows) {
        return rows * mlp.fan_out(layer);
    }
    static std::size_t widest(const Mlp& mlp, std::size_t rows) { return rows * mlp.max_width(); }
    static void grow_layers(std::vector<Buffer<T>>& per_layer, const Mlp& mlp,
                            std::size_t rows) {
        if (per_layer.size() < mlp.num_layers()) per_layer.resize(mlp.num_layers());
        for (std::size_t l = 0; l < mlp.num_layers(); ++l) grow(per_layer[l], layer_values(mlp, l, rows));
    }
};

template <class T>
struct WorkspaceOf<Mlp, T> {
    using type = MlpWorkspace<T>;
};

}  // namespace metafast
