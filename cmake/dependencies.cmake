# Finds loom's dependencies. LibTorch comes from the torch wheel in the set-up venv
# (CMAKE_PREFIX_PATH=torch.utils.cmake_prefix_path); everything else from Debian.

find_package(Threads REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
# loom uses the C API only; keep Open MPI's and MPICH's deprecated C++ bindings out.
target_compile_definitions(MPI::MPI_C INTERFACE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(absl REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
find_path(STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb REQUIRED)

# Torch's CMake config probes the local GPU for its arch list unless told one; the
# probe needs a CUDA dialect this CMake does not know, and there may be no GPU here.
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "8.0;9.0")
endif()
find_package(Torch REQUIRED)

# The wheel's libraries find its CUDA runtime and NCCL (site-packages/nvidia/*/lib) by
# their own RUNPATH. loom's binaries must see the same copies first, at link time and
# at run time, or an older toolkit library with the same soname wins.
get_filename_component(LOOM_TORCH_LIB_DIR "${TORCH_LIBRARY}" DIRECTORY)
get_filename_component(LOOM_SITE_PACKAGES "${LOOM_TORCH_LIB_DIR}/../.." ABSOLUTE)
file(GLOB LOOM_WHEEL_NVIDIA_LIB_DIRS LIST_DIRECTORIES true "${LOOM_SITE_PACKAGES}/nvidia/*/lib")
add_library(loom_torch INTERFACE)
target_link_libraries(loom_torch INTERFACE ${TORCH_LIBRARIES})
if(LOOM_WHEEL_NVIDIA_LIB_DIRS)
  list(JOIN LOOM_WHEEL_NVIDIA_LIB_DIRS ":" _loom_nv_path)
  target_link_options(loom_torch INTERFACE "LINKER:-rpath-link,${_loom_nv_path}"
                      "LINKER:-rpath,${_loom_nv_path}")
endif()

# CUDA and NCCL: compiled wherever found. NCCL is taken from the wheel when it carries
# one (the copy libtorch_cuda loads), else from the CUDA toolkit.
set(LOOM_HAVE_CUDA OFF)
set(LOOM_HAVE_NCCL OFF)
if(LOOM_WITH_CUDA)
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    set(LOOM_HAVE_CUDA ON)
    find_path(NCCL_INCLUDE_DIR nccl.h
              HINTS "${LOOM_SITE_PACKAGES}/nvidia/nccl/include" ${CUDAToolkit_INCLUDE_DIRS}
              NO_DEFAULT_PATH)
    find_path(NCCL_INCLUDE_DIR nccl.h)
    find_library(NCCL_LIBRARY NAMES libnccl.so.2 nccl NAMES_PER_DIR
                 HINTS "${LOOM_SITE_PACKAGES}/nvidia/nccl/lib" ${CUDAToolkit_LIBRARY_DIR}
                 NO_DEFAULT_PATH)
    find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2)
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      set(LOOM_HAVE_NCCL ON)
      add_library(loom_nccl INTERFACE)
      target_include_directories(loom_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
      target_link_libraries(loom_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
    endif()
  endif()
endif()
message(STATUS "loom: LibTorch ${Torch_VERSION} from ${LOOM_TORCH_LIB_DIR}")
message(STATUS "loom: CUDA ${LOOM_HAVE_CUDA} (${CUDAToolkit_VERSION}), NCCL ${LOOM_HAVE_NCCL} (${NCCL_LIBRARY})")

# The torch headers are the heaviest part of every translation unit that uses them:
# one precompiled header target that torch-using libraries reuse.
add_library(loom_torch_pch OBJECT "${CMAKE_CURRENT_LIST_DIR}/pch_anchor.cpp")
target_link_libraries(loom_torch_pch PUBLIC loom_torch PRIVATE loom_warnings)
target_precompile_headers(loom_torch_pch PUBLIC <torch/torch.h>)

# Helper for libraries that include torch: reuses the shared precompiled header.
function(loom_use_torch target)
  target_link_libraries(${target} PUBLIC loom_torch)
  target_precompile_headers(${target} REUSE_FROM loom_torch_pch)
endfunction()
