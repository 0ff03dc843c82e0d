"""Word lists of the instruction world; every category is disjoint from every other."""
from __future__ import annotations

COLOURS = ("red", "blue", "green", "yellow", "black", "white", "brown", "pink", "purple",
           "grey", "silver", "gold", "violet", "navy", "teal")
ANIMALS = ("cat", "dog", "fox", "owl", "bear", "wolf", "horse", "mouse", "duck", "goat",
           "sheep", "frog", "lion", "tiger", "rabbit", "deer", "hen", "pig", "cow", "crow", "seal",
           "snake", "bee", "ant", "eagle", "otter", "camel", "zebra", "panda", "whale")
FRUITS = ("apple", "pear", "plum", "banana", "cherry", "grape", "lemon", "mango", "peach",
          "melon", "kiwi", "lime", "apricot", "fig", "coconut", "papaya", "guava", "quince")
OBJECTS = ("ball", "cup", "box", "lamp", "chair", "table", "book", "hat", "shoe", "key",
           "clock", "bag", "pen", "door", "spoon", "kite", "bowl", "fork", "knife", "plate", "bell",
           "rope", "sock", "coat", "drum", "boat", "mirror", "brush", "candle", "basket")
# Descriptive attributes for summaries and corpus text (kept apart from review words).
ADJECTIVES = ("big", "small", "fast", "old", "young", "tall", "soft", "loud", "quiet", "happy",
              "sleepy", "round", "heavy", "shiny", "warm", "tiny", "long", "wide", "clever", "brave",
              "gentle", "strong", "bright", "smooth")
# Capitalised first names; none is also an ordinary word of this world.
NAMES = ("Tom", "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Henry", "Iris",
         "Jack", "Julia", "Leo", "Lucy", "Milo", "Nora", "Oscar", "Paula", "Quinn", "Ruth",
         "Sam", "Tara", "Victor", "Wendy", "Adam", "Bella", "Carl", "Diana", "Eric", "Fiona")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen", "nineteen", "twenty")
REVIEW_NOUNS = ("soup", "pizza", "service", "room", "coffee", "bread", "film", "hotel", "staff",
                "music", "cake", "tea", "bed", "view", "menu", "salad", "wine", "pasta", "garden", "show",
                "price", "waiter", "lunch", "dinner", "breakfast")
POSITIVE_WORDS = ("tasty", "lovely", "great", "good", "nice", "wonderful", "excellent", "fresh",
                  "friendly", "delicious", "pleasant", "perfect", "amazing", "charming", "superb")
NEGATIVE_WORDS = ("bland", "awful", "bad", "terrible", "rude", "stale", "cold", "dirty", "boring",
                  "horrible", "poor", "slow", "noisy", "greasy", "dull")
# A mild made-up insult lexicon, split by part of speech so templates stay grammatical.
TOXIC_ADJECTIVES = ("dumb", "stupid", "pathetic", "worthless")
TOXIC_NOUNS = ("idiot", "loser", "moron", "jerk")
TOXIC_WORDS = TOXIC_ADJECTIVES + TOXIC_NOUNS + ("trash",)

CATEGORIES: dict[str, tuple[str, ...]] = {
    "colours": COLOURS,
    "animals": ANIMALS,
    "fruits": FRUITS,
    "objects": OBJECTS,
}
