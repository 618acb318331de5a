from harken.pipeline.text import ClauseSplitter, clean_for_speech, strip_wake_words


def split(text: str, step: int = 3, **kw) -> list[str]:
    splitter = ClauseSplitter(**kw)
    pieces = []
    for i in range(0, len(text), step):  # streamed in small pieces, like tokens
        pieces += splitter.feed(text[i : i + step])
    return pieces + splitter.flush()


def test_first_clause_is_handed_over_early_then_whole_sentences():
    text = "Well, the capital of France is Paris, a city of art. It has, of course, many museums."
    assert split(text, min_clause_chars=5) == [
        "Well,", "the capital of France is Paris, a city of art.", "It has, of course, many museums.",
    ]


def test_short_first_clause_waits_for_more_text():
    assert split("Yes, it is. Sure.", min_clause_chars=12) == ["Yes, it is.", "Sure."]


def test_abbreviations_and_decimals_do_not_end_sentences():
    assert split("Mr. Smith paid 3.5 dollars, e.g. cash. Done!") == ["Mr. Smith paid 3.5 dollars,", "e.g. cash.", "Done!"]


def test_markup_is_not_read_out():
    assert clean_for_speech("**Paris** is `the` capital # yes") == "Paris is the capital yes"
    assert split("* One thing.\n* Another") == ["One thing.", "Another"]


def test_nothing_is_lost():
    text = "No punctuation at all in this reply"
    assert split(text) == [text]


def test_wake_phrase_remnants_are_stripped():
    assert strip_wake_words("Hey Jarvis, what time is it?", "hey_jarvis") == "What time is it?"
    assert strip_wake_words("Jarvis what time is it", "hey_jarvis") == "What time is it"
    assert strip_wake_words("arvis. Turn on the lights.", "hey_jarvis") == "Turn on the lights."
    assert strip_wake_words("Alexa, play music", "alexa") == "Play music"
    assert strip_wake_words("Hey Mycroft, stop", "hey_mycroft") == "Stop"


def test_real_words_are_kept():
    assert strip_wake_words("What time is it?", "hey_jarvis") == "What time is it?"
    assert strip_wake_words("Visit the museum", "hey_jarvis") == "Visit the museum"
    assert strip_wake_words("Travel plans for June", "hey_jarvis") == "Travel plans for June"


def test_whole_wake_phrase_is_recognised_only_with_its_name():
    from harken.pipeline.text import split_wake_phrase

    assert split_wake_phrase("Hey, Jarvis, what time is it?", "hey_jarvis") == ("What time is it?", True)
    assert split_wake_phrase("Hey darvis tell me a joke.", "hey_jarvis") == ("Tell me a joke.", True)
    assert split_wake_phrase("Hey, do you want to miss it?", "hey_jarvis") == ("Do you want to miss it?", False)
    assert split_wake_phrase("Page office turn on the lights", "hey_jarvis") == ("Page office turn on the lights", False)
