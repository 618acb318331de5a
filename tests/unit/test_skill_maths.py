"""Arithmetic asked aloud (skills/maths.py): the spoken answers, and what is refused."""

from __future__ import annotations

import pytest

from harken.skills import maths
from harken.skills.maths import MathsError, NotMaths


@pytest.mark.parametrize(("asked", "said"), [
    ("17 times 3", "17 times 3 is 51."),
    ("seventeen times three", "17 times 3 is 51."),
    ("Seventeen times three?", "17 times 3 is 51."),
    ("7 x 8", "7 times 8 is 56."),
    ("7x8", "7 times 8 is 56."),
    ("7 × 8", "7 times 8 is 56."),
    ("6 * 7", "6 times 7 is 42."),
    ("6 multiplied by 7", "6 times 7 is 42."),
    ("10 divided by 3", "10 divided by 3 is about 3.33."),
    ("12 ÷ 4", "12 divided by 4 is 3."),
    ("12/4", "12 divided by 4 is 3."),
    ("10 over 4", "10 divided by 4 is 2.5."),
    ("twenty five divided by five", "25 divided by 5 is 5."),
    ("5 + 3", "5 plus 3 is 8."),
    ("one hundred and twenty three plus four", "123 plus 4 is 127."),
    ("twenty-five plus five.", "25 plus 5 is 30."),
    ("5 added to 10", "5 plus 10 is 15."),
    ("5 - 3", "5 minus 3 is 2."),
    ("10 take away 3", "10 minus 3 is 7."),
    ("10 less 3", "10 minus 3 is 7."),
    ("add 2 and 3", "2 plus 3 is 5."),
    ("add two and a half and three", "2.5 plus 3 is 5.5."),
    ("add 5 to 10", "5 plus 10 is 15."),
    ("the sum of 4 and 5", "4 plus 5 is 9."),
    ("subtract 4 from 10", "10 minus 4 is 6."),
    ("multiply 6 by 7", "6 times 7 is 42."),
    ("divide 10 by 4", "10 divided by 4 is 2.5."),
    ("15 percent of 80", "15 percent of 80 is 12."),
    ("15% of 80", "15 percent of 80 is 12."),
    ("fifteen per cent of eighty", "15 percent of 80 is 12."),
    ("the square root of 144", "The square root of 144 is 12."),
    ("square root of two", "The square root of 2 is about 1.41."),
    ("the cube root of 27", "The cube root of 27 is 3."),
    ("2 to the power of 10", "2 to the power of 10 is 1024."),
    ("2^10", "2 to the power of 10 is 1024."),
    ("two raised to the power of eight", "2 to the power of 8 is 256."),
    ("2 to the power of minus 1", "2 to the power of minus 1 is 0.5."),
    ("5 squared", "5 squared is 25."),
    ("three cubed", "3 cubed is 27."),
    ("half of 90", "Half of 90 is 45."),
    ("two and a half times four", "2.5 times 4 is 10."),
    ("seven point five times two", "7.5 times 2 is 15."),
    ("0.1 plus 0.2", "0.1 plus 0.2 is 0.3."),
    ("1,000 times 1,000", "1000 times 1000 is 1000000."),
    ("a million times a million", "1000000 times 1000000 is 1 trillion."),
    ("-3 plus 5", "Minus 3 plus 5 is 2."),
    ("negative three times two", "Minus 3 times 2 is minus 6."),
    ("what is 2 plus 2", "2 plus 2 is 4."),
    ("What's 7 times 8?", "7 times 8 is 56."),
    ("how much is 3 plus 4", "3 plus 4 is 7."),
    ("calculate 6 times 7", "6 times 7 is 42."),
    ("2 + 2 =", "2 plus 2 is 4."),
])
def test_a_sum_is_answered_restating_it_in_digits(asked, said):
    assert maths.answer(asked) == said


@pytest.mark.parametrize(("asked", "value"), [
    ("2 plus 3 times 4", 14),  # times before plus
    ("2 times 3 plus 4", 10),
    ("10 minus 3 minus 2", 5),  # left to right
    ("100 divided by 10 divided by 5", 2),
    ("2 times 3 squared", 18),  # powers before times
    ("2 to the power of 3 to the power of 2", 512),  # powers from the right
    ("minus 2 squared", -4),  # a sign applies to the power
    ("15 percent of 80 plus 3", 15),
    ("the square root of 144 plus 25", 37),
    ("5 minus minus 3", 8),
])
def test_the_usual_order_of_operations(asked, value):
    assert maths.evaluate(maths.parse(asked)) == pytest.approx(value)


@pytest.mark.parametrize("asked", [
    "what is the capital of france", "how are you", "5 minutes", "the time", "five", "minus five", "twenty five",
    "2 and 3", "what is 2 plus", "plus 2", "times", "(2+3)*4", "2 plus 2 is 4", "what is 20 percent off 50",
    "__import__('os').system('ls')", "1e30 times 1e30", "",
])
def test_what_is_not_a_sum_is_left_for_another_skill(asked):
    with pytest.raises(NotMaths):
        maths.parse(asked)


@pytest.mark.parametrize(("asked", "said"), [
    ("10 divided by 0", "You can't divide by zero."),
    ("ten divided by zero", "You can't divide by zero."),
    ("0 to the power of minus 1", "You can't divide by zero."),
    ("the square root of minus 4", "A negative number has no real square root."),
    ("10 to the power of 10000", "That number is too big for me."),
    ("2 to the power of 2 to the power of 2 to the power of 2 to the power of 2", "That number is too big for me."),  # 2**65536
    ("10 to the power of minus 10000", "That number is too small for me."),
    (" times ".join(["999999999999999999999999999999"] * 4), "That number is too big for me."),
    ("1" * 31 + " plus 1", "That number is too long for me."),
    (" plus ".join(["1"] * 21), "That is too long a sum for me."),  # 41 tokens
])
def test_a_sum_without_an_answer_is_refused_with_a_sentence(asked, said):
    with pytest.raises(MathsError) as refused:
        maths.answer(asked)
    assert str(refused.value) == said


def test_the_longest_sum_and_number_allowed_are_answered():
    assert maths.answer("calculate " + " plus ".join(["1"] * 20)).endswith(" is 20.")  # 40 tokens
    assert maths.answer("1" * 30 + " plus 1").endswith(" is about 1.11 times 10 to the power of 29.")


def test_a_result_with_two_decimals_is_said_whole_and_a_longer_one_rounded():
    assert maths.answer("99 divided by 4") == "99 divided by 4 is 24.75."
    assert maths.answer("10 divided by 3") == "10 divided by 3 is about 3.33."
