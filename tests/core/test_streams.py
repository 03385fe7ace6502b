"""Named random streams: no two draws of a check can share a stream, whatever the seed and keys."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gradcheck_cli.core.streams import Stream, stream


def _first(seed, name, *keys):
    return stream(seed, name, *keys).integers(0, 2**63, size=4).tolist()


def test_every_stream_of_every_key_draws_its_own_numbers():
    draws = {}
    for seed, name, keys in itertools.product([0, 1, 2, 7, 2**40], list(Stream), [(), (0,), (2,), (0, 0), (1, 2), (2, 1)]):
        draws[(seed, name, keys)] = tuple(_first(seed, name, *keys))
    assert len(set(draws.values())) == len(draws)


def test_the_second_orders_two_streams_no_longer_coincide_at_node_2():
    # the direction's stream and node 2's gate stream were both default_rng([seed, 2, 2])
    assert _first(0, Stream.HVP_DIRECTION) != _first(0, Stream.HVP_GATE, 2)


def test_short_entropy_padded_with_zeros_is_not_a_collision():
    # NumPy pads entropy with zeros: [a, b] and [a, b, 0] would be one stream without the key count
    assert _first(0, Stream.GATE_CHECK) != _first(0, Stream.GATE_CHECK, 0)
    assert _first(0, Stream.GATE_CHECK, 0) != _first(0, Stream.GATE_CHECK, 0, 0)


def test_the_same_seed_stream_and_keys_draw_the_same_numbers():
    assert _first(3, Stream.SECOND_POINT) == _first(3, Stream.SECOND_POINT)
    assert np.array_equal(stream(5, Stream.PYTHON_CHECK).standard_normal(3), stream(5, Stream.PYTHON_CHECK).standard_normal(3))


def test_negative_seeds_and_keys_are_refused():
    with pytest.raises(ValueError):
        stream(-1, Stream.SECOND_POINT)
    with pytest.raises(ValueError):
        stream(0, Stream.HVP_GATE, -2)
