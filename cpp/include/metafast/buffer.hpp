// Buffer<T>: a std::vector whose storage starts on a 64-byte boundary, so the kernels' vector
// loads and stores (64 bytes wide with AVX-512) do not straddle cache lines.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace metafast {

template <class T>
struct CacheAlignedAllocator {
    using value_type = T;
    static constexpr std::align_val_t alignment{64};

    CacheAlignedAllocator() = default;
    template <class U>
    CacheAlignedAllocator(const CacheAlignedAllocator<U>&) {}

    T* allocate(std::size_t n) {
        if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
        return static_cast<T*>(::operator new(n * sizeof(T), alignment));
    }
    void deallocate(T* p, std::size_t) { ::operator delete(p, alignment); }

    template <class U>
    bool operator==(const CacheAlignedAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const CacheAlignedAllocator<U>&) const { return false; }
};

template <class T>
using Buffer = std::vector<T, CacheAlignedAllocator<T>>;

// n rounded up to whole cache lines of T: the distance between vectors laid end to end in one
// Buffer, so that each starts on a line as the Buffer does.
template <class T>
constexpr std::size_t cache_line_stride(std::size_t n) {
    constexpr std::size_t line = 64 / sizeof(T);
    return (n + line - 1) / line * line;
}

// Resizes v to n, allocating exactly n when it must grow (a plain resize may allocate up to twice
// n), so that the memory estimates made from the sizes (learners' bytes_needed) hold.
template <class Vector>
void resize_exactly(Vector& v, std::size_t n) {
    if (n > v.capacity()) v.reserve(n);
    v.resize(n);
}

// Grows v to at least n elements, allocating exactly n; never shrinks.
template <class Vector>
void grow_exactly(Vector& v, std::size_t n) {
    if (v.size() < n) resize_exactly(v, n);
}

}  // namespace metafast
