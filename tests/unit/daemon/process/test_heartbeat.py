from daemon.process.heartbeat import MinuteCount


def test_the_first_minute_counts_since_the_first_sample() -> None:
    m = MinuteCount(window_s=60)
    assert m.sample(0.0, 100) == 0
    assert m.sample(5.0, 103) == 3
    assert m.sample(30.0, 110) == 10


def test_later_samples_count_from_the_newest_one_at_least_a_minute_old() -> None:
    m = MinuteCount(window_s=60)
    for t, total in [(0.0, 0), (30.0, 50), (60.0, 80), (65.0, 90)]:
        last = m.sample(t, total)
    assert last == 90  # from t=0 (the sample at t=5 would be a minute old; none is)
    assert m.sample(95.0, 120) == 70  # from t=30
    assert m.sample(200.0, 120) == 0  # a quiet minute
