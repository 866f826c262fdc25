// A non-owning view of an n-dimensional array: data pointer, dtype, device, shape, strides.
// Sizes and strides are 64-bit so sequences of 512k tokens times wide channels never overflow.
#ifndef MAMBASERVE_CORE_TENSOR_H_
#define MAMBASERVE_CORE_TENSOR_H_

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "core/device.h"
#include "core/dtype.h"

namespace mambaserve {

inline constexpr int kMaxRank = 6;

class TensorView {
 public:
  TensorView() = default;
  // A contiguous (row-major) view.
  TensorView(void* data, DType dtype, Device device, std::initializer_list<int64_t> shape);
  TensorView(void* data, DType dtype, Device device, const int64_t* shape, int rank);

  void* data() const { return data_; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int rank() const { return rank_; }
  int64_t size(int d) const { return shape_[Wrap(d)]; }
  int64_t stride(int d) const { return strides_[Wrap(d)]; }
  int64_t numel() const;
  int64_t nbytes() const { return numel() * DTypeSize(dtype_); }
  bool is_contiguous() const;
  bool empty() const { return data_ == nullptr; }

  // Views over part of this one (no copies). Slice keeps dimension d, from [begin, end).
  TensorView Slice(int d, int64_t begin, int64_t end) const;
  // Drops dimension 0 by indexing it.
  TensorView Index(int64_t i) const;
  // Reinterprets a contiguous view with a new shape of the same element count.
  absl::StatusOr<TensorView> Reshape(std::initializer_list<int64_t> shape) const;

  // Checks dtype, rank and each size (-1 matches any) and names the tensor in the error.
  absl::Status Expect(const char* name, DType dtype, std::initializer_list<int64_t> shape) const;
  std::string ShapeString() const;

 private:
  int Wrap(int d) const { return d < 0 ? d + rank_ : d; }

  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Device device_;
  int rank_ = 0;
  std::array<int64_t, kMaxRank> shape_{};
  std::array<int64_t, kMaxRank> strides_{};
};

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_TENSOR_H_
