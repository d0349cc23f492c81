// Writing a file so that readers see either the old file or the whole new one, never a
// half-written one, even if the process or the machine dies mid-write: snapshots, solver
// states and exported archives are written this way (a crash during a snapshot must not
// destroy the previous snapshot of the same name, and a resume must never load a torn file).
#pragma once

#include <filesystem>
#include <string_view>

namespace incept {

// Writes `bytes` to a temporary file in path's folder, fsyncs it, renames it over `path`
// and fsyncs the folder (so the rename itself survives a power loss). On any failure the
// temporary file is removed, `path` is left as it was, and incept::Error names the path and
// the system's reason.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

}  // namespace incept
