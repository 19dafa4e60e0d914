"""Estimated Cortex-M4 cycles of one inference: the instructions QEMU executes, one by one, priced
with the cycle table of Arm's Cortex-M4 Technical Reference Manual (DDI 0439, section 3.3).

QEMU counts instructions, not cycles (`-icount` makes every instruction one tick). To estimate cycles,
`trace` runs the bare-metal harness once under QEMU with one instruction per translation block
(`-singlestep -d exec,nochain`: one log line per executed instruction) and keeps the program counters
of the first `tinymnist_scores` call, from its entry to its return; `arm-none-eabi-objdump` says which
instruction each address holds; `estimate` prices the sequence with `CycleModel`:

| class | cycles charged | Table 3-1 |
| --- | --- | --- |
| ALU: move, add, logic, compare, shift, extend, bit field, saturate, SIMD (SADD8, SSUB8, SEL, SXTB16, PKHBT) | 1 | 1 |
| multiply: MUL, MLA, MLS, SMULL, UMULL, SMLAL, SMLAD, SMLABB, SMMULR, ... | 1 | 1 |
| divide: SDIV, UDIV | `divide` (12) | 2-12, early termination |
| load single: LDR, LDRB, LDRH, LDRSB, LDRSH | 2 | 2 |
| ... right after a load/store single whose loaded register it does not use for its address | 1 | pipelined |
| store single: STR, STRB, STRH | 1 | "STR Rx,[Ry,#imm] is always one cycle" |
| load/store double: LDRD, STRD | 3 | 1 + N |
| load/store multiple, PUSH, POP of N registers | 1 + N | 1 + N |
| a load/store whose address the previous data-processing instruction computed | + 1 | no forwarding |
| branch taken: B, BL, BX, BLX, B<cond>, CBZ/CBNZ | 1 + `refill` | 1 + P, P = 1-3 |
| conditional branch or CBZ/CBNZ not taken | 1 | 1 |
| a write to the PC: POP {..., pc}, LDR pc, MOV/ADD pc | its cycles + `refill` | + P |
| TBB, TBH | 2 + `refill` | 2 + P |
| IT | 1 | 1 (may fold onto a preceding 16-bit instruction: 0) |

An instruction inside an IT block whose condition fails still takes its cycle(s), as on the core.
`refill` is P, the pipeline refill after a taken branch, which the TRM gives as 1 to 3 cycles
depending on the target's alignment and width and on whether the core speculates the address early;
the estimate assumes 2 and reports the taken branches, so that any P is one multiplication away
(`CycleEstimate.at_refill`).

What the estimate leaves out: flash wait states (it assumes zero-wait-state memory, as the TRM's table
does; a part running from flash at 100+ MHz adds wait states, hidden in part by its prefetch buffer or
cache), bus contention between instruction fetch and data access (both in the same SRAM or flash
bank), the write buffer filling up, interrupts, and the register dependencies beyond the address
stall above. It is an estimate of the core's cycles in an ideal memory system, not a measurement.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinymnist.export.c.toolchain import QEMU, Target, ToolError

OBJDUMP = "arm-none-eabi-objdump"
ENTRY = "tinymnist_scores"
CONDITIONS = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al")
ALIASES = {"ip": "r12", "fp": "r11", "sl": "r10", "sb": "r9"}
_REGISTER = re.compile(r"\b(r1[0-5]|r[0-9]|sp|lr|pc|ip|fp|sl|sb)\b")

# Mnemonics by class, without the condition code, the flag-setting "s" or the .w/.n width suffix.
LOADS = ("ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrt", "ldrbt", "ldrht", "ldrsbt", "ldrsht", "ldrex", "ldrexb",
         "ldrexh")
STORES = ("str", "strb", "strh", "strt", "strbt", "strht", "strex", "strexb", "strexh")
DOUBLES = ("ldrd", "strd")
MULTIPLES = ("ldm", "ldmia", "ldmfd", "ldmdb", "ldmea", "stm", "stmia", "stmea", "stmdb", "stmfd", "push", "pop")
DIVIDES = ("sdiv", "udiv")
MULTIPLIES = ("mul", "mla", "mls", "smull", "umull", "smlal", "umlal", "umaal", "smmul", "smmulr", "smmla", "smmlar",
              "smmls", "smmlsr", "smlad", "smladx", "smlsd", "smlsdx", "smuad", "smuadx", "smusd", "smusdx", "smlald",
              "smlaldx", "smlsld", "smlsldx", "smulbb", "smulbt", "smultb", "smultt", "smulwb", "smulwt", "smlabb",
              "smlabt", "smlatb", "smlatt", "smlawb", "smlawt", "smlalbb", "smlalbt", "smlaltb", "smlaltt")
LONG_RESULT = ("smull", "umull", "smlal", "umlal", "umaal", "smlald", "smlaldx", "smlsld", "smlsldx", "smlalbb",
               "smlalbt", "smlaltb", "smlaltt")  # two destination registers
BRANCHES = ("b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh")
NO_DESTINATION = ("cmp", "cmn", "tst", "teq", "it", "nop")
# Data-processing mnemonics (1 cycle), an optional flag-setting s included.
KNOWN_ALU = re.compile(r"^(adc|add|addw|adr|and|asr|bfc|bfi|bic|clz|cmn|cmp|eor|lsl|lsr|mov|movw|movt|mvn|neg|nop|orn|orr|"
                       r"pkhbt|pkhtb|rbit|rev|rev16|revsh|ror|rrx|rsb|sbc|sbfx|sub|subw|sxtb|sxth|sxtb16|sxtab|sxtah|"
                       r"sxtab16|tst|teq|ubfx|uxtb|uxth|uxtb16|uxtab|uxtah|uxtab16|ssat|usat|ssat16|usat16|sel|"
                       r"[su]h?(add|sub)(8|16)|[su]q?(add|sub)(8|16)|[su]h?(asx|sax)|[su]q?(asx|sax)|q(d)?(add|sub)|"
                       r"usad8|usada8|cpsid|cpsie|bkpt|svc|dmb|dsb|isb|wfi|wfe|sev|mrs|msr)s?$")
# The classes an estimate reports, in this order.
CLASSES = ("alu", "multiply", "divide", "load", "load pipelined", "store", "load/store double",
           "load/store multiple", "branch taken", "branch not taken", "it")


@dataclass(frozen=True)
class Instruction:
    """One instruction of the program, as objdump prints it."""

    address: int
    size: int  # bytes: 2 or 4
    mnemonic: str  # the base mnemonic: no condition, no flag-setting s, no .w/.n
    conditional: bool  # a condition in the mnemonic (B<cond>, or an instruction inside an IT block)
    operands: str
    kind: str  # "alu" | "multiply" | "divide" | "load" | "store" | "double" | "multiple" | "branch" | "it"
    writes: frozenset[str]  # registers it writes (as far as the address stall needs)
    addresses: frozenset[str]  # registers it computes a memory address from
    registers: int  # registers moved by LDM/STM/PUSH/POP (N), else 0
    writes_pc: bool  # a branch by a write to the PC (POP {pc}, LDR pc, MOV pc, ADD pc)


def _split_mnemonic(text: str) -> tuple[str, bool]:
    """(base mnemonic, has a condition) of an objdump mnemonic such as "ldrbne.w", "bls.n", "adcs", "moveq"."""
    m = text.lower().split(".")[0]
    known = (*LOADS, *STORES, *DOUBLES, *MULTIPLES, *DIVIDES, *MULTIPLIES, *BRANCHES)
    for base in sorted(known, key=len, reverse=True):
        rest = m[len(base):] if m.startswith(base) else None
        if rest is None:
            continue
        if base in MULTIPLIES and rest.startswith("s"):  # MULS, SMULLS, ...: the flag-setting form
            rest = rest[1:]
        if rest in ("", *CONDITIONS):
            return base, rest not in ("", "al")
    if m.startswith("it"):
        return "it", False
    if KNOWN_ALU.match(m):  # "adcs", "lsls", "bics": a flag-setting s, not a condition
        return m, False
    for cond in CONDITIONS:
        if m.endswith(cond) and KNOWN_ALU.match(m[:-len(cond)]):
            return m[:-len(cond)], cond != "al"
    return m, False


def _registers(text: str) -> list[str]:
    return [ALIASES.get(r, r) for r in _REGISTER.findall(text)]


def parse_instruction(address: int, encoding: str, mnemonic: str, operands: str) -> Instruction:
    """One objdump line's fields as an Instruction (encoding: the hex halfwords, e.g. "f7ff ffee")."""
    size = len(encoding.replace(" ", "")) // 2
    base, conditional = _split_mnemonic(mnemonic)
    operands = operands.split(";")[0].split("@")[0].strip()
    regs = _registers(operands)
    bracket = re.search(r"\[([^\]]*)\]", operands)
    braces = re.search(r"\{([^}]*)\}", operands)
    writes: list[str] = []
    addresses: list[str] = []
    registers, writes_pc = 0, False
    if base in LOADS or base in STORES or base in DOUBLES:
        kind = "double" if base in DOUBLES else ("load" if base in LOADS else "store")
        addresses = _registers(bracket[1]) if bracket else []
        if kind == "load" or base == "ldrd":
            writes = regs[:2] if base == "ldrd" else regs[:1]
        writes_pc = kind == "load" and writes[:1] == ["pc"]
    elif base in MULTIPLES:
        kind = "multiple"
        listed = _registers(braces[1]) if braces else []
        registers = _count_list(braces[1]) if braces else 0
        addresses = ["sp"] if base in ("push", "pop") else regs[:1]
        if base == "pop" or base.startswith("ldm"):
            writes = listed
            writes_pc = "pc" in listed
    elif base in DIVIDES:
        kind, writes = "divide", regs[:1]
    elif base in MULTIPLIES:
        kind, writes = "multiply", regs[:2] if base in LONG_RESULT else regs[:1]
    elif base in BRANCHES:
        kind = "branch"
    elif base == "it":
        kind = "it"
    else:
        kind = "alu"
        writes = [] if base in NO_DESTINATION else regs[:1]
        writes_pc = writes[:1] == ["pc"]
    return Instruction(address, size, base, conditional, operands, kind, frozenset(writes), frozenset(addresses),
                       registers, writes_pc)


def _count_list(text: str) -> int:
    """Registers in a list such as "r4, r5, r6, lr" or "r4-r7, lr"."""
    n = 0
    for part in text.split(","):
        ends = _registers(part)
        if "-" in part and len(ends) == 2:
            n += int(ends[1][1:]) - int(ends[0][1:]) + 1
        else:
            n += len(ends)
    return n


_LINE = re.compile(r"^\s*([0-9a-f]+):\t([0-9a-f ]+?)\s*\t(\S+)(?:\t(.*))?$")


def disassemble(elf: Path) -> tuple[dict[int, Instruction], dict[str, int]]:
    """Every instruction of the ELF's code by address, and the address of every function symbol."""
    try:
        text = subprocess.run([OBJDUMP, "-d", str(elf)], capture_output=True, text=True, check=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolError(f"{OBJDUMP} failed: {exc}") from None
    program: dict[int, Instruction] = {}
    symbols: dict[str, int] = {}
    for line in text.splitlines():
        label = re.match(r"^([0-9a-f]+) <([^>]+)>:$", line)
        if label:
            symbols[label[2]] = int(label[1], 16)
            continue
        m = _LINE.match(line)
        if m and not m[3].startswith("."):  # .word / .short: literal pools
            program[int(m[1], 16)] = parse_instruction(int(m[1], 16), m[2], m[3], m[4] or "")
    return program, symbols


# ---------------------------------------------------------------------------------------------
# The trace


def _trace_lines(log: Iterable[bytes]) -> Iterator[int]:
    """The program counter of each "Trace" line of QEMU's exec log:
    `Trace 0: 0x7f.. [cs_base/pc/flags/cflags] symbol`."""
    for line in log:
        if line.startswith(b"Trace"):
            yield int(line[line.index(b"[") + 1:].split(b"/", 2)[1], 16)


def call_window(pcs: Iterable[int], entry: int, program: dict[int, Instruction]) -> Iterator[int]:
    """The program counters from the first execution of `entry` to the return from that call."""
    previous = None
    it = iter(pcs)
    for pc in it:
        if pc == entry and previous is not None:
            caller = program.get(previous)
            if caller is None:
                raise ToolError(f"the call of {ENTRY} comes from an unknown address {previous:#x}")
            back = previous + caller.size
            yield pc
            for pc in it:
                if pc == back:
                    return
                yield pc
            raise ToolError(f"the trace ended inside {ENTRY}")
        previous = pc
    raise ToolError(f"{ENTRY} never ran")


def trace(elf: Path, target: Target, image: np.ndarray, timeout: float = 600) -> tuple[list[int], dict[int, Instruction]]:
    """The program counters of one `tinymnist_scores` call on `image` (uint8 28 x 28) under QEMU, one
    per executed instruction, and the program they index."""
    program, symbols = disassemble(elf)
    if ENTRY not in symbols:
        raise ToolError(f"{elf} has no {ENTRY}")
    entry = symbols[ENTRY] & ~1
    with tempfile.TemporaryDirectory(prefix="tinymnist-trace-") as tmp:
        work = Path(tmp)
        (work / "images.bin").write_bytes(np.ascontiguousarray(image, dtype=np.uint8).reshape(-1)[:784].tobytes())
        fifo = work / "exec.log"
        os.mkfifo(fifo)
        # One instruction per translation block and no chaining: the exec log names every instruction.
        cmd = [QEMU, "-M", target.machine, "-nographic", "-monitor", "none", "-serial", "none", "-semihosting-config",
               "enable=on,target=native", "-singlestep", "-d", "exec,nochain", "-D", str(fifo), "-kernel", str(elf.resolve())]
        try:
            qemu = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            raise ToolError(f"{QEMU} failed: {exc}") from None
        try:
            with open(fifo, "rb", buffering=1 << 20) as log:
                pcs = list(call_window(_trace_lines(log), entry, program))
        finally:
            qemu.kill()  # the rest of the run (the harness's second call) is not needed
            qemu.wait(timeout)
    return pcs, program


# ---------------------------------------------------------------------------------------------
# The cycle model


@dataclass(frozen=True)
class CycleModel:
    """The cycles the estimate charges (Cortex-M4 TRM, Table 3-1), where the TRM gives a range."""

    refill: int = 2  # P: pipeline refill after a taken branch, 1-3 in the TRM
    divide: int = 12  # SDIV/UDIV: 2-12 in the TRM (early termination); the worst case


@dataclass(frozen=True)
class CycleEstimate:
    """Estimated cycles of one inference, by instruction class."""

    instructions: int
    cycles: int
    counts: dict[str, int]  # executed instructions per class (CLASSES)
    class_cycles: dict[str, int]  # cycles per class, the refills of taken branches included
    address_stalls: int  # loads/stores whose address the previous data-processing instruction computed
    taken_branches: int  # taken branches and writes to the PC: each costs `refill` cycles
    model: CycleModel = field(default_factory=CycleModel)
    unknown: dict[str, int] = field(default_factory=dict)  # mnemonics priced as ALU for want of a rule

    @property
    def cpi(self) -> float:
        return self.cycles / self.instructions if self.instructions else 0.0

    def at_refill(self, refill: int) -> int:
        """The estimate with another pipeline refill P (1-3)."""
        return self.cycles + (refill - self.model.refill) * self.taken_branches


def estimate(pcs: Iterable[int], program: dict[int, Instruction], model: CycleModel | None = None) -> CycleEstimate:
    """Price an executed instruction sequence (program counters) with the cycle model."""
    model = model or CycleModel()
    counts: Counter[str] = Counter()
    cycles: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    stalls = taken = 0
    prev: Instruction | None = None
    pending: Instruction | None = None  # the instruction whose successor decides whether it branched
    for pc in pcs:
        insn = program.get(pc)
        if insn is None:
            raise ToolError(f"the trace executed {pc:#x}, which objdump does not list as an instruction")
        if pending is not None:  # a branch: taken unless execution fell through to the next address
            jumped = pc != pending.address + pending.size
            taken += _settle(pending, jumped, model, counts, cycles)
            pending = None
        cls, cost = _price(insn, prev, model)
        if insn.kind in ("load", "store", "double", "multiple") and prev is not None and prev.kind in ("alu", "multiply") \
                and prev.writes & insn.addresses:
            stalls += 1
            cost += 1
        if insn.kind == "branch" or insn.writes_pc:
            pending = insn
            cycles[cls] += cost  # without the refill: _settle adds it when the branch is taken
        else:
            counts[cls] += 1
            cycles[cls] += cost
        if cls == "alu" and not KNOWN_ALU.match(insn.mnemonic):
            unknown[insn.mnemonic] += 1
        prev = insn
    if pending is not None:
        taken += _settle(pending, True, model, counts, cycles)  # the return that ends the call
    total = sum(cycles.values())
    return CycleEstimate(sum(counts.values()), total, {c: counts[c] for c in CLASSES if counts[c]},
                         {c: cycles[c] for c in CLASSES if cycles[c]}, stalls, taken, model, dict(unknown))


def _price(insn: Instruction, prev: Instruction | None, model: CycleModel) -> tuple[str, int]:
    """(class, cycles before any refill) of one instruction after `prev`."""
    if insn.kind == "load":
        # Pipelined: the previous load/store single overlaps this one's address phase, unless this
        # address needs the register the previous load brought in.
        if prev is not None and prev.kind in ("load", "store") and not (prev.kind == "load" and prev.writes & insn.addresses):
            return "load pipelined", 1
        return "load", 2
    if insn.kind == "store":
        return "store", 1
    if insn.kind == "double":
        return "load/store double", 3
    if insn.kind == "multiple":
        return "load/store multiple", 1 + insn.registers
    if insn.kind == "divide":
        return "divide", model.divide
    if insn.kind == "multiply":
        return "multiply", 1
    if insn.kind == "it":
        return "it", 1
    if insn.kind == "branch":
        return "branch", 2 if insn.mnemonic in ("tbb", "tbh") else 1
    return "alu", 1


def _settle(insn: Instruction, jumped: bool, model: CycleModel, counts: Counter[str], cycles: Counter[str]) -> int:
    """Count a branch (or a write to the PC) now that its successor is known; 1 when it was taken."""
    if insn.kind == "branch":
        cls = "branch taken" if jumped else "branch not taken"
        cycles[cls] += cycles.pop("branch", 0)
    else:  # POP {pc}, LDR pc, MOV pc: its cycles stay in its own class
        cls = _price(insn, None, model)[0]
    counts[cls] += 1
    if jumped:
        cycles["branch taken" if insn.kind == "branch" else cls] += model.refill
    return int(jumped)


def estimated_cycles(elf: Path, target: Target, image: np.ndarray, model: CycleModel | None = None) -> CycleEstimate:
    """Estimated Cortex-M4 cycles of one inference of the model built into `elf` (arm_build's image) on
    `image` (uint8 28 x 28): QEMU's executed instructions priced by `model`. An estimate: zero wait
    states, no bus contention, a fixed pipeline refill (see the module docstring)."""
    if not target.simd:
        raise ValueError("the cycle model is the Cortex-M4's; the Cortex-M0's timings differ")
    pcs, program = trace(elf, target, image)
    return estimate(pcs, program, model)
