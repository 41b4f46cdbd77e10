#!/usr/bin/env bash
# Broken on purpose: "shellcheck rejects" must report the unquoted
# variable (SC2086) and the cd without a fallback (SC2164).
dir=$1
cd $dir
rm -rf build
