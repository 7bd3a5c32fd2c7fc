// Runs a libFuzzer target over saved inputs without libFuzzer, so GCC builds replay every
// corpus on each ctest run (modelled on Zeek's src/fuzzers/standalone-driver.cc).
//
// Usage: <target>_replay PATH...   where each PATH is a file or a directory (searched
// recursively). Arguments starting with '-' are libFuzzer flags and are ignored. Exits 1
// when no input was found, so a missing corpus fails the test instead of passing vacuously.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

bool ReadFile(const std::filesystem::path& path, std::vector<char>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return false;
  }
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

void RunOne(const std::filesystem::path& path) {
  std::vector<char> bytes;
  if (!ReadFile(path, bytes)) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(2);
  }
  // A heap block of exactly the input's size, so sanitizers see reads past its end.
  const std::size_t size = bytes.size();
  std::unique_ptr<std::uint8_t[]> copy(new std::uint8_t[size == 0 ? 1 : size]);
  std::copy(bytes.begin(), bytes.end(), copy.get());
  std::fprintf(stderr, "running %s (%zu bytes)\n", path.c_str(), size);
  LLVMFuzzerTestOneInput(copy.get(), size);
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) {
    LLVMFuzzerInitialize(&argc, &argv);
  }
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') {
      continue;
    }
    const std::filesystem::path arg(argv[i]);
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(arg, ec)) {
        if (entry.is_regular_file()) {
          inputs.push_back(entry.path());
        }
      }
    } else if (std::filesystem::is_regular_file(arg, ec)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "no such file or directory: %s\n", argv[i]);
      return 2;
    }
  }
  // Directory order is unspecified; a fixed order makes failures reproducible.
  std::sort(inputs.begin(), inputs.end());
  for (const auto& path : inputs) {
    RunOne(path);
  }
  std::fprintf(stderr, "%zu inputs ran without a crash\n", inputs.size());
  return inputs.empty() ? 1 : 0;
}
