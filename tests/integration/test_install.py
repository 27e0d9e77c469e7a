#!/usr/bin/env python3
"""Install to a prefix and build consumers out of tree (issue 4).

`cmake --install <builddir> --prefix <tmp>` must install the library, header,
CLI, pkg-config file and CMake package. A small C consumer is then built
outside the source tree twice: with `pkg-config --cflags --libs heaptap` and
with a CMake project using find_package(heaptap) and heaptap::heaptap. Both
must run (LD_LIBRARY_PATH=<tmp>/lib) and get the header's version from
heaptap_version(). The installed CLI must report the version and find the
installed library.
"""
import glob
import os
import shutil
import subprocess

import htlib

CONSUMER_C = r"""
#include <heaptap.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
	void *p = malloc(1000);
	unsigned v = heaptap_version();
	printf("consumer: heaptap %s (0x%06x), header 0x%06x\n", heaptap_version_string(), v,
	       HEAPTAP_VERSION_HEX);
	struct heaptap_stats st;
	int rc = heaptap_stats(&st, sizeof(st));
	printf("consumer: stats rc=%d (%s)\n", rc, rc ? heaptap_strerror(rc) : "ok");
	free(p);
	return v == HEAPTAP_VERSION_HEX && rc == 0 ? 0 : 1;
}
"""

CONSUMER_CMAKE = """
cmake_minimum_required(VERSION 3.18)
project(heaptap_consumer C)
find_package(heaptap REQUIRED)
add_executable(consumer main.c)
target_link_libraries(consumer PRIVATE heaptap::heaptap)
"""


def sh(ctx, argv, what, env=None, cwd=None):
    p = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode("utf-8", "replace")
    ctx.check(p.returncode == 0, what, "$ %s\n%s" % (" ".join(argv), out[-3000:]))
    return p.returncode == 0, out


def body(ctx):
    if not ctx.builddir:
        raise htlib.Skip("--builddir not given")
    for tool in ("cmake", "pkg-config", "cc"):
        if not shutil.which(tool):
            raise htlib.Skip("%s not found" % tool)
    prefix = ctx.tmpdir("prefix")
    ok, _ = sh(ctx, ["cmake", "--install", ctx.builddir, "--prefix", prefix],
               "cmake --install to a temporary prefix")
    if not ok:
        return
    # The libdir is lib/ for this prefix; accept lib64 or a multiarch dir too.
    pcs = glob.glob(os.path.join(prefix, "lib*", "**", "pkgconfig", "heaptap.pc"), recursive=True)
    ctx.check(len(pcs) == 1, "heaptap.pc installed", str(pcs))
    if not pcs:
        return
    pcdir = os.path.dirname(pcs[0])
    libdir = os.path.dirname(pcdir)
    for rel in ("include/heaptap.h", "bin/heaptap"):
        ctx.check(os.path.exists(os.path.join(prefix, rel)), "%s installed" % rel)
    for pat in ("libheaptap.so", "libheaptap.so.*", "libheaptap.a",
                "cmake/heaptap/heaptapConfig.cmake"):
        ctx.check(glob.glob(os.path.join(libdir, pat)), "%s installed in %s" % (pat, libdir))

    env = htlib.clean_env({"PKG_CONFIG_PATH": pcdir, "LD_LIBRARY_PATH": libdir})

    # 1. pkg-config
    work = ctx.tmpdir("consumer-pc")
    with open(os.path.join(work, "main.c"), "w") as f:
        f.write(CONSUMER_C)
    ok, flags = sh(ctx, ["pkg-config", "--cflags", "--libs", "heaptap"], "pkg-config --cflags --libs heaptap",
                   env=env)
    if ok:
        ctx.check(prefix in flags, "pkg-config flags point into the install prefix",
                  "flags: %s (prefix %s)" % (flags.strip(), prefix))
        ok, _ = sh(ctx, ["cc", "-o", "consumer", "main.c"] + flags.split(),
                   "build a consumer with pkg-config", env=env, cwd=work)
    if ok:
        ok, out = sh(ctx, [os.path.join(work, "consumer")], "run the pkg-config consumer",
                     env=env, cwd=work)
        ctx.check("header 0x" in out, "pkg-config consumer called heaptap_version()", out)
        p = subprocess.run(["ldd", os.path.join(work, "consumer")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ctx.check(libdir.encode() in p.stdout, "the consumer uses the installed libheaptap.so",
                  p.stdout.decode(errors="replace"))

    # 2. find_package
    src = ctx.tmpdir("consumer-cmake")
    with open(os.path.join(src, "main.c"), "w") as f:
        f.write(CONSUMER_C)
    with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
        f.write(CONSUMER_CMAKE)
    bld = os.path.join(src, "build")
    ok, _ = sh(ctx, ["cmake", "-S", src, "-B", bld, "-DCMAKE_PREFIX_PATH=" + prefix],
               "configure a consumer with find_package(heaptap)", env=env)
    if ok:
        ok, _ = sh(ctx, ["cmake", "--build", bld], "build the find_package consumer", env=env)
    if ok:
        ok, out = sh(ctx, [os.path.join(bld, "consumer")], "run the find_package consumer", env=env)
        ctx.check("header 0x" in out, "find_package consumer called heaptap_version()", out)

    # 3. the installed CLI
    cli = os.path.join(prefix, "bin", "heaptap")
    ok, out = sh(ctx, [cli, "--version"], "installed heaptap --version", env=env)
    if ok:
        ctx.check(out.startswith("heaptap "), "heaptap --version prints the version", out)
    outdir = ctx.tmpdir("cli")
    # The installed CLI must preload the installed library, even with the
    # prefix chosen at install time.
    ok, out = sh(ctx, [cli, "run", "--rate", "1", "--dir", outdir, "--", "sh", "-c",
                       "echo \"$LD_PRELOAD\""], "installed heaptap run", env=env)
    if ok:
        pre = out.strip().splitlines()[-1] if out.strip() else ""
        real = os.path.realpath(libdir)
        ctx.check(pre.startswith(real + "/libheaptap.so") and os.path.exists(pre.split(":")[0]),
                  "installed heaptap run preloads the installed library", "LD_PRELOAD=%r" % pre)


if __name__ == "__main__":
    htlib.main(body, __doc__)
