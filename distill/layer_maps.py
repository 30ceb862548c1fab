"""Which teacher layer each student layer learns from: (teacher, student) pairs for the layered
distillation terms (hidden states, attention maps, value relations)."""

from __future__ import annotations


def layer_pairs(rule, teacher_layers: int, student_layers: int, feature: str) -> list[tuple[int, int]]:
    """(teacher, student) layer pairs, 1-based; 0 is the embedding output (hidden only).

    uniform  student layer m ← teacher layer m·Lt/Ls (TinyBERT), plus 0 ← 0 for hidden states
    last     the last layers only
    [[t, s], ...] explicit pairs
    """
    if isinstance(rule, str):
        if rule == "last":
            pairs = [(teacher_layers, student_layers)]
        elif rule == "uniform":
            if teacher_layers % student_layers:
                raise ValueError(f"layer map 'uniform': teacher depth {teacher_layers} is not a "
                                 f"multiple of student depth {student_layers}; list the pairs")
            step = teacher_layers // student_layers
            pairs = [(m * step, m) for m in range(1, student_layers + 1)]
            pairs = ([(0, 0)] if feature == "hidden" else []) + pairs
        else:
            raise ValueError(f"layer map {rule!r}; expected uniform, last or [[t, s], ...]")
    else:
        pairs = [tuple(int(i) for i in pair) for pair in rule]
    lowest = 0 if feature == "hidden" else 1
    for t, s in pairs:
        if not (lowest <= t <= teacher_layers and lowest <= s <= student_layers):
            raise ValueError(f"layer pair (teacher {t}, student {s}) for {feature} is out of range: "
                             f"teacher layers {lowest}..{teacher_layers}, student {lowest}..{student_layers}")
    return pairs
