#!/usr/bin/env bash
# Installs what a fresh Debian machine with only the Rust toolchain lacks for this workspace:
# libclang (bindgen, for the RocksDB bindings), a C++ compiler, and Chromium (the trace timeline's
# test renders the page in headless Chromium, as a person would see it). Does nothing when all is
# there.
set -euo pipefail

need=()
# Look for libclang itself (libclang.so*, libclang-NN.so*), not libclang-cpp.so*, which bindgen cannot use
# and which some base images ship without libclang.
if ! compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null \
   && ! compgen -G "/usr/lib/llvm-*/lib/libclang-[0-9]*.so*" >/dev/null \
   && ! compgen -G "/usr/lib/x86_64-linux-gnu/libclang.so*" >/dev/null \
   && ! compgen -G "/usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so*" >/dev/null \
   && ! compgen -G "/usr/lib/aarch64-linux-gnu/libclang.so*" >/dev/null \
   && ! compgen -G "/usr/lib/aarch64-linux-gnu/libclang-[0-9]*.so*" >/dev/null; then
  need+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} (apt)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to install ${need[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
