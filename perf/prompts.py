"""A fixed set of distinct prompts for a base model, handed out without repeats.

Every prompt starts with different words, so no two requests share more than the BOS token:
the benchmark measures fresh prompts, not a server's prefix cache.
"""

from __future__ import annotations

PROMPTS: tuple[str, ...] = (
    "The history of the printing press begins in the fifteenth century, when",
    "Photosynthesis is the process by which green plants turn sunlight into",
    "In the small harbour town where I grew up, every morning the fishermen",
    "A good recipe for bread needs only four ingredients: flour, water, salt and",
    "Volcanoes form where molten rock from deep inside the Earth rises through",
    "Learning to play the violin as an adult is difficult because",
    "The Roman aqueducts carried water across long distances using nothing but",
    "Honeybees communicate the location of flowers to each other by performing",
    "When the first railway opened between two English cities, people were",
    "Climate scientists measure the temperature of the past by drilling ice cores",
    "My grandmother kept a garden behind her house, and every summer she grew",
    "Compilers translate source code into machine instructions in several stages:",
    "The migration of monarch butterflies covers thousands of kilometres each year,",
    "Ancient Egyptian scribes wrote on papyrus, a material made from",
    "Jazz music grew out of the city of New Orleans at the start of",
    "To repair a flat bicycle tyre, first remove the wheel from the frame, then",
    "Deep under the ocean, hydrothermal vents support strange communities of",
    "Our solar system formed about four and a half billion years ago from",
    "Chess was brought to Europe from Persia, and over the centuries its rules",
    "Vaccines train the immune system to recognise a pathogen without",
    "Lighthouses guided sailors along dangerous coasts long before electricity, using",
    "Once upon a time, in a kingdom surrounded by mountains, there lived",
    "Economists describe inflation as a general rise in prices that reduces",
    "Coral reefs are built over thousands of years by tiny animals called",
    "Writing a clear technical report starts with knowing who will read it and",
    "Glaciers shape valleys by slowly grinding the rock beneath them, leaving",
    "Tea was first cultivated in China, and from there the habit of drinking it",
    "Electric motors work because a current flowing through a wire in a magnetic field",
    "Penguins live almost entirely in the southern hemisphere, where they",
    "Medieval castles were designed to be defended by a small number of soldiers, with",
    "Every language changes over time; English, for example, has borrowed words from",
    "Sourdough starter is a living culture of wild yeast and bacteria that",
    "Astronomers discovered the first planet orbiting another star in",
    "Silk was produced in secret for centuries, and the route that carried it west",
    "Rainbows appear when sunlight enters raindrops, bends, reflects and",
    "Urban planners today try to design streets that are safe for walking, with",
    "Whales are mammals, so although they live in the sea they must",
    "Public libraries in the nineteenth century changed how ordinary people",
    "Tides rise and fall twice a day because of the gravitational pull of",
    "Desert plants survive long droughts by storing water in",
)


class PromptPool:
    """Hands out PROMPTS in order; after a full cycle, each gets a distinct 'Part N' opening."""

    def __init__(self, prompts: tuple[str, ...] = PROMPTS) -> None:
        self._prompts = prompts
        self._next = 0

    def take(self) -> str:
        cycle, index = divmod(self._next, len(self._prompts))
        self._next += 1
        prompt = self._prompts[index]
        return prompt if cycle == 0 else f"Part {cycle + 1}. {prompt}"
