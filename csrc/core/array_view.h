// A read-only view of a contiguous array that someone else owns.
#ifndef ARAGOG_CORE_ARRAY_VIEW_H_
#define ARAGOG_CORE_ARRAY_VIEW_H_

#include <cstdint>
#include <vector>

namespace aragog {

// Pointer and length of a contiguous, immutable array: a numpy buffer seen by the bindings
// or a std::vector in C++ tests. It never owns or copies its elements; the owner must keep
// them alive, and unchanged, while the view is used.
template <typename T>
class ArrayView {
 public:
  constexpr ArrayView() = default;
  constexpr ArrayView(const T* data, int64_t size) : data_(data), size_(size) {}
  ArrayView(const std::vector<T>& values)  // NOLINT(google-explicit-constructor)
      : data_(values.data()), size_(static_cast<int64_t>(values.size())) {}

  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const T& operator[](int64_t i) const { return data_[i]; }
  const T& front() const { return data_[0]; }
  const T& back() const { return data_[size_ - 1]; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

  // Elements [first, last).
  ArrayView Slice(int64_t first, int64_t last) const {
    return ArrayView(data_ + first, last - first);
  }

 private:
  const T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace aragog

#endif  // ARAGOG_CORE_ARRAY_VIEW_H_
