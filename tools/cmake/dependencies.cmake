# Finds every dependency: the CUDA libraries under the CUDA install, the rest from
# Debian packages (tools/setup.sh installs them). Nothing is downloaded.
find_package(Threads REQUIRED)
find_package(CUDAToolkit REQUIRED)
find_package(Protobuf REQUIRED)
find_package(PNG REQUIRED)
find_package(CURL REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 QUIET CONFIG)
find_package(LibArchive REQUIRED)
find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs dnn)

function(incept_find_lib target name header)
  find_library(${target}_LIB NAMES ${name}
    HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib64 ENV CUDNN_PATH
    PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
  find_path(${target}_INC NAMES ${header}
    HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV CUDNN_PATH PATH_SUFFIXES include)
  if(NOT ${target}_LIB OR NOT ${target}_INC)
    message(FATAL_ERROR "incept: ${name} not found (${header}). ${ARGN}")
  endif()
  add_library(incept::${target} UNKNOWN IMPORTED)
  set_target_properties(incept::${target} PROPERTIES IMPORTED_LOCATION ${${target}_LIB}
                        INTERFACE_INCLUDE_DIRECTORIES ${${target}_INC})
  message(STATUS "incept: ${name}: ${${target}_LIB}")
endfunction()

incept_find_lib(cudnn cudnn cudnn.h "Install cuDNN 9 from NVIDIA (it ships with the CUDA toolkit image).")
incept_find_lib(nccl nccl nccl.h "Install NCCL 2 from NVIDIA (libnccl-dev).")
incept_find_lib(lmdb lmdb lmdb.h "apt-get install liblmdb-dev")
incept_find_lib(turbojpeg turbojpeg turbojpeg.h "apt-get install libturbojpeg0-dev")
incept_find_lib(openblas openblas cblas.h "apt-get install libopenblas-dev")
if(NOT CLI11_FOUND)
  find_path(CLI11_INC CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  set_target_properties(CLI11::CLI11 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${CLI11_INC})
endif()

# cairo (Debian libcairo2-dev): draws the training report's PNG graphs.
find_package(PkgConfig REQUIRED)
pkg_check_modules(incept_cairo REQUIRED IMPORTED_TARGET cairo)
add_library(incept::cairo ALIAS PkgConfig::incept_cairo)
# ---- optional: MPI, for the "mpi" rendezvous of multi-process training (Debian: libopenmpi-dev) ----
option(INCEPT_MPI "Build the MPI process group when MPI is found" ON)
if(INCEPT_MPI)
  find_package(MPI COMPONENTS C QUIET)
endif()
find_program(INCEPT_MPIRUN NAMES mpirun mpiexec)
