"""``describe_machine``: what every bench result records about the machine it ran on."""
from __future__ import annotations

from runners.hardware import describe_machine

# Excerpts in the kernel's own format, one processor block each shortened; written by hand, not by the parser.
AMD_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi2
"""
INTEL_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse4_2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
INTEL_AVX512_BF16 = """processor\t: 0
model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz
flags\t\t: fpu avx avx2 avx512f avx512_bf16
"""
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm
CPU implementer\t: 0x41
"""
MEMINFO = "MemTotal:       24683584 kB\nMemFree:        20367012 kB\n"


def describe(tmp_path, cpuinfo: str, meminfo: str = MEMINFO) -> dict:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    (tmp_path / "meminfo").write_text(meminfo)
    return describe_machine(tmp_path / "cpuinfo", tmp_path / "meminfo")


def test_an_avx2_only_cpu_has_no_native_bf16(tmp_path):
    machine = describe(tmp_path, AMD_AVX2)
    assert machine["cpu_model"] == "AMD EPYC 7B13"
    assert machine["vector_isa"] == "avx2"
    assert machine["bf16_feature"] is None
    assert machine["memory_gib"] == 23.5  # 24,683,584 kB


def test_the_widest_vector_set_and_the_best_bf16_feature_are_named(tmp_path):
    amx = describe(tmp_path, INTEL_AMX)
    assert (amx["vector_isa"], amx["bf16_feature"]) == ("avx512f", "amx_bf16")
    assert amx["cpu_model"].startswith("Intel(R) Xeon(R) Platinum 8481C")
    avx512 = describe(tmp_path, INTEL_AVX512_BF16)
    assert (avx512["vector_isa"], avx512["bf16_feature"]) == ("avx512f", "avx512_bf16")


def test_arm_features_are_read_and_an_unnamed_cpu_stays_unnamed(tmp_path):
    machine = describe(tmp_path, ARM)
    assert machine["vector_isa"] == "asimd"
    assert machine["cpu_model"] is None
    assert machine["bf16_feature"] is None


def test_missing_files_give_none_not_an_error(tmp_path):
    machine = describe_machine(tmp_path / "absent-cpuinfo", tmp_path / "absent-meminfo")
    assert machine["cpu_model"] is None and machine["vector_isa"] is None and machine["memory_gib"] is None
    assert machine["usable_cpus"] >= 1
    assert len(machine["load_1_5_15"]) == 3
