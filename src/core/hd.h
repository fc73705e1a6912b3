/* CNN_HD marks small pure functions shared by host code and CUDA kernels (the RNG,
 * the learning-rate schedule), so the cuda backend computes exactly what ref does. */
#ifndef CNN_HD_H
#define CNN_HD_H

#if defined(__CUDACC__)
#define CNN_HD __host__ __device__ __forceinline__
#else
#define CNN_HD static inline
#endif

#endif
