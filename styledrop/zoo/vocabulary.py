"""The curated subject vocabulary of the emoji world: emoji subjects and capital letters.

Every subject is a single code point of Noto Color Emoji (no ZWJ sequences, no people, no
flags of countries), chosen to be concrete and visually distinct at 64x64, and grouped by the
PartiPrompts "Basic" category it would fall under. Names follow the CLDR short names (or the
plain word a person would use, with the CLDR name kept as a synonym); synonyms come from the
CLDR names and keywords and the GitHub aliases, curated by hand. The table is static so that
the dataset does not change with the installed Python's Unicode database or the `emoji`
package.

Changing anything here (or in the styles or renderers) changes the dataset: bump
`RECIPE_VERSION`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

RECIPE_VERSION = "emoji-world-2"

# The Parti "Basic" categories the vocabulary maps to, plus the letters.
CATEGORIES = (
    "Animals",
    "Food & Beverage",
    "Produce & Plants",
    "Vehicles",
    "Artifacts",
    "Indoor Scenes",
    "Outdoor Scenes",
    "Illustrations",
    "Letters",
)


# Names (and synonyms) used without an article: mass nouns and plurals.
def _phrases(text: str) -> frozenset[str]:
    return frozenset(phrase.strip() for phrase in text.split(";"))


_NO_ARTICLE = _phrases(
    "french fries; fries; chips; pancakes; bacon; bread; spaghetti; pasta; sushi; tempura; "
    "popcorn; honey; salt; coffee; tea; green tea; boba; bubble tea; beer; red wine; milk; "
    "ice; salad; fondue; curry; curry rice; ramen; pho; soup; stew; candy; chocolate; "
    "custard; pudding; noodle soup; cheese; orange juice; grapes; blueberries; cherries; "
    "broccoli; garlic; peanuts; lettuce; corn; maize; wheat; leaves; fallen leaves; "
    "autumn leaves; coral; brain coral; cutlery; chopsticks; scissors; jeans; trousers; "
    "gloves; socks; matching socks; sunglasses; glasses; eyeglasses; spectacles; goggles; "
    "shades; sneakers; headphones; books; cash; money; fireworks; fog; rain; lightning; "
    "fire; sparkles; musical notes; dice; bricks; yarn; thread; wood; skis; robots; chains; "
    "wool; aubergine; toilet paper; bowling; badminton; ping pong; table tennis; "
    "rainbow colors; camping; mount fuji; fuji; saturn; lady liberty; planet earth; dawn; "
    "dusk; sunshine; music; glitter; mist; stars; tentacles; berries; groundnuts; "
    "sand dunes; mountains; train tracks; tennis; citrus"
)
# Names that take "the".
_THE = frozenset({"earth", "sun", "statue of liberty"})
# Words that start with a vowel letter but take "a" (or a consonant letter but take "an").
_ARTICLE_OVERRIDES = {"unicorn": "a", "ufo": "a", "uniform": "a", "f1": "an", "hourglass": "an"}


@dataclass(frozen=True)
class Subject:
    """One subject of the emoji world.

    Attributes:
        id: Stable identifier (lowercase, underscores), used in captions files and mappings.
        chars: The text rendered: one emoji code point, or one capital letter.
        name: Canonical name used in captions ("penguin", "letter 'A'").
        category: One of `CATEGORIES`.
        synonyms: Other names for the same thing, best first.
        kind: "emoji" (Noto Color Emoji) or "letter" (sans-serif capital).
    """

    id: str
    chars: str
    name: str
    category: str
    synonyms: tuple[str, ...] = ()
    kind: str = "emoji"

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by the synonyms."""
        return (self.name, *self.synonyms)

    def phrase(self, noun: str | None = None) -> str:
        """The noun phrase with its article ("a penguin", "an owl", "grapes", "the moon")."""
        return noun_phrase(noun or self.name) if self.kind == "emoji" else (noun or self.name)

    def zero_shot_prompts(self) -> list[str]:
        """The prompts that name it zero-shot ("a penguin", "penguin", "an image of a penguin").

        The phrasings are those of the plain captions, on the canonical name; a zero-shot
        classifier's class embedding for the subject is the mean of theirs.
        """
        main = self.phrase()
        image_of = self.phrase(self.synonyms[0]) if self.kind == "letter" else main
        prompts = [main, self.name, f"an image of {image_of}", f"a picture of {image_of}"]
        return list(dict.fromkeys(prompts))


def noun_phrase(noun: str) -> str:
    """Adds the indefinite article a noun needs ("an owl", "a unicorn", "grapes", "the moon")."""
    if noun in _NO_ARTICLE or noun.split(" ", 1)[0] in ("the", "a", "an", "some"):
        return noun
    if noun in _THE:
        return f"the {noun}"
    first = noun.split(" ", 1)[0].split("-", 1)[0]
    article = _ARTICLE_OVERRIDES.get(first, "an" if first[:1] in "aeiou" else "a")
    return f"{article} {noun}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# One line per subject: "emoji | name | synonym; synonym". Sections give the category.
_TABLE = """
# Animals
🐧 | penguin | emperor penguin; antarctic bird
🐕 | dog | hound; pet dog
🐺 | wolf | wolf face
🦊 | fox | fox face; red fox
🦝 | raccoon | racoon
🐈 | cat | house cat; kitty
🦁 | lion | lion face
🐅 | tiger | striped big cat
🐆 | leopard | spotted big cat
🐎 | horse | racehorse; racing horse
🦄 | unicorn | unicorn face
🦓 | zebra | striped horse
🦌 | deer | stag
🫎 | moose | elk
🐄 | cow | dairy cow
🐖 | pig | hog
🐑 | sheep | ewe; lamb
🐐 | goat | billy goat
🐪 | camel | dromedary
🦙 | llama | alpaca
🦒 | giraffe | giraffe face
🐘 | elephant | grey elephant
🦏 | rhinoceros | rhino
🦛 | hippopotamus | hippo
🐁 | mouse | grey mouse
🐹 | hamster | hamster face
🐇 | rabbit | bunny; hare
🐿 | chipmunk | squirrel
🦔 | hedgehog | spiny animal
🦇 | bat | vampire bat
🐻 | bear | bear face; brown bear
🐨 | koala | koala bear
🐼 | panda | giant panda; panda face
🦦 | otter | sea otter
🦘 | kangaroo | joey
🐒 | monkey | macaque
🦍 | gorilla | ape
🦃 | turkey | turkey bird
🐔 | chicken | hen
🐓 | rooster | cockerel
🐣 | hatching chick | chick in an egg
🐦 | bird | songbird; blue bird
🕊 | dove | peace dove; white dove
🦅 | eagle | bird of prey
🦆 | duck | mallard
🦢 | swan | white swan
🦉 | owl | wise owl
🦩 | flamingo | pink flamingo
🦚 | peacock | peafowl
🦜 | parrot | macaw
🐸 | frog | frog face; toad
🐊 | crocodile | alligator
🐢 | turtle | tortoise
🦎 | lizard | gecko
🐍 | snake | serpent
🐉 | dragon | green dragon
🦕 | sauropod | diplodocus; brontosaurus; long-necked dinosaur
🦖 | t-rex | tyrannosaurus rex; dinosaur
🐋 | whale | blue whale
🐬 | dolphin | flipper
🦭 | seal | sea lion
🐟 | fish | blue fish
🐠 | tropical fish | clownfish; reef fish
🐡 | blowfish | pufferfish
🦈 | shark | great white shark
🐙 | octopus | tentacles
🦀 | crab | red crab
🐚 | spiral shell | seashell; shell
🪸 | coral | coral reef
🪼 | jellyfish | jelly
🐌 | snail | garden snail
🦋 | butterfly | blue butterfly
🐛 | caterpillar | bug
🐜 | ant | black ant
🐝 | honeybee | bee; bumblebee
🐞 | ladybug | ladybird
🕷 | spider | black spider
🦂 | scorpion | stinger

# Food & Beverage
🍕 | pizza | slice of pizza; pizza slice
🍔 | hamburger | burger; cheeseburger
🍟 | french fries | fries; chips
🌭 | hot dog | sausage in a bun
🥪 | sandwich | sub sandwich
🌮 | taco | mexican taco
🍳 | fried egg | egg in a frying pan; cooking
🥞 | pancakes | stack of pancakes
🍗 | poultry leg | drumstick; chicken leg
🥩 | steak | cut of meat
🍞 | loaf of bread | bread
🥐 | croissant | pastry
🧀 | cheese wedge | cheese
🥚 | egg | white egg
🍜 | bowl of noodles | ramen; noodle soup; steaming bowl
🍝 | spaghetti | pasta
🍲 | pot of food | stew; soup
🍛 | curry rice | curry
🍣 | sushi | sushi roll
🍱 | bento box | lunch box
🥗 | green salad | salad; bowl of salad
🍦 | ice cream cone | soft ice cream; soft serve
🍨 | bowl of ice cream | ice cream; sundae
🍩 | doughnut | donut
🍪 | cookie | biscuit
🎂 | birthday cake | cake
🍰 | slice of cake | shortcake; piece of cake
🧁 | cupcake | muffin
🥧 | pie | fruit pie
🍫 | chocolate bar | chocolate
🍭 | lollipop | lolly
🍯 | honey pot | honey; jar of honey
🍿 | popcorn | bucket of popcorn
☕ | cup of coffee | coffee; coffee mug; hot beverage
🍵 | teacup | cup of tea; green tea; tea
🧋 | bubble tea | boba; cup of boba; boba tea
🥤 | soda cup | cup with straw; soft drink
🧃 | juice box | beverage box
🍺 | beer mug | beer; mug of beer
🍷 | wine glass | glass of wine; red wine
🍸 | cocktail glass | cocktail; martini
🍹 | tropical drink | cocktail with an umbrella
🍾 | champagne bottle | bottle with popping cork; bottle
🥛 | glass of milk | milk
🧊 | ice cube | ice

# Produce & Plants
🍎 | red apple | apple
🍐 | pear | green pear
🍊 | orange | tangerine; mandarin
🍋 | lemon | citrus
🍌 | banana | yellow banana
🍉 | watermelon | slice of watermelon
🍇 | grapes | bunch of grapes
🍓 | strawberry | red berry
🫐 | blueberries | berries
🍒 | cherries | pair of cherries
🍑 | peach | ripe peach
🍍 | pineapple | ananas
🥥 | coconut | half coconut
🥝 | kiwi fruit | kiwi
🍅 | tomato | red tomato
🍆 | eggplant | aubergine
🥑 | avocado | half avocado
🥦 | broccoli | head of broccoli
🥒 | cucumber | pickle
🌶 | chili pepper | hot pepper; red pepper
🫑 | bell pepper | green pepper; capsicum
🌽 | ear of corn | corn; corn cob
🥕 | carrot | orange carrot
🧄 | garlic | garlic bulb
🧅 | onion | brown onion
🥔 | potato | spud
🌰 | chestnut | nut
🍄 | mushroom | toadstool
🌵 | cactus | desert plant
🌲 | evergreen tree | pine tree; fir tree
🌳 | tree | deciduous tree; oak tree
🌴 | palm tree | coconut tree
🌱 | seedling | sprout; young plant
🍀 | four leaf clover | lucky clover
🍁 | maple leaf | autumn leaf; red leaf
🍂 | fallen leaves | autumn leaves
🪴 | potted plant | plant; house plant
🌸 | cherry blossom | pink blossom
🌹 | rose | red rose
🌺 | hibiscus | tropical flower
🌻 | sunflower | yellow sunflower
🌼 | flower | blossom; daisy
🌷 | tulip | pink tulip
🪷 | lotus | water lily; lotus flower
💐 | bouquet | bunch of flowers

# Vehicles
🚗 | car | automobile; red car
🚕 | taxi | cab; yellow taxi
🚙 | suv | sport utility vehicle; jeep
🏎 | racing car | race car; f1 race car; formula one car; f1
🚓 | police car | cop car
🚑 | ambulance | emergency vehicle
🚒 | fire engine | fire truck
🛻 | pickup truck | pick-up truck
🚚 | delivery truck | truck; lorry
🚜 | tractor | farm tractor
🚌 | bus | city bus
🚂 | steam locomotive | locomotive; steam train
🚆 | train | passenger train
🚄 | high-speed train | bullet train
🚊 | tram | streetcar
🚲 | bicycle | bike
🛴 | kick scooter | scooter
🛵 | motor scooter | moped
🏍 | motorcycle | motorbike
✈ | airplane | plane; aeroplane; jet
🚁 | helicopter | chopper
🛸 | flying saucer | ufo
🚀 | rocket | spaceship
🛰 | satellite | space satellite
⛵ | sailboat | boat; sailing boat; yacht
🚤 | speedboat | motorboat
🛳 | passenger ship | cruise ship
⛴ | ferry | ferry boat
🚢 | ship | ocean liner
🛶 | canoe | kayak
🛷 | sled | sledge
🛹 | skateboard | board
🪂 | parachute | paraglider

# Artifacts
🪑 | chair | wooden chair
🧺 | basket | laundry basket
🧹 | broom | sweeping brush
🗑 | wastebasket | trash bin; trash can; bin
🕰 | mantelpiece clock | clock; mantel clock
⏰ | alarm clock | wake-up clock
⌛ | hourglass | sand timer
⌚ | wristwatch | watch
📱 | mobile phone | phone; smartphone; iphone; cell phone
☎ | telephone | landline; old telephone
💻 | laptop | laptop computer; laptop screen
🖥 | desktop computer | computer; monitor
📷 | camera | photo camera
📺 | television | tv; television set
🎧 | headphones | pair of headphones; headphone
💡 | light bulb | lightbulb; bulb
🕯 | candle | lit candle
🔑 | key | door key
🔒 | padlock | lock; locked padlock
🔨 | hammer | claw hammer
🪓 | axe | hatchet
🔧 | wrench | spanner
🪛 | screwdriver | flathead screwdriver
⚙ | gear | cog
🧲 | magnet | horseshoe magnet
🪚 | saw | handsaw; carpentry saw
🪜 | ladder | step ladder
🗡 | dagger | sword; knife
🛡 | shield | knight's shield
🧭 | compass | magnetic compass
🔭 | telescope | spyglass
🔬 | microscope | lab microscope
🎈 | balloon | party balloon; red balloon
🎁 | present | gift; wrapped gift
🎄 | christmas tree | decorated tree
🎃 | jack-o-lantern | carved pumpkin
🪁 | kite | flying kite
🧸 | teddy bear | stuffed bear; toy bear
🎲 | game die | die; dice
🧩 | puzzle piece | jigsaw piece
🎮 | game controller | video game controller; gamepad
🎯 | bullseye | dartboard; target; direct hit
🔮 | crystal ball | fortune ball
⚽ | soccer ball | football; ball
🏀 | basketball | orange ball
🎾 | tennis ball | tennis
🏆 | trophy | cup; award
🎸 | guitar | electric guitar
🎻 | violin | fiddle
🎺 | trumpet | horn; brass instrument
🥁 | drum | snare drum
🎹 | piano | musical keyboard; keyboard instrument
🎤 | microphone | mic
🔔 | bell | golden bell
📚 | books | stack of books; pile of books
📕 | book | closed book; red book
📖 | open book | large open book
✉ | envelope | mail
📦 | package | box; parcel; cardboard box
✏ | pencil | yellow pencil
🖊 | pen | ballpoint pen
🖌 | paintbrush | brush
✂ | scissors | pair of scissors
📝 | memo | note and pencil; written note
🗿 | moai | statue; stone head
💎 | gem | diamond; jewel; gem stone
💍 | ring | diamond ring; engagement ring
👑 | crown | king's crown; golden crown
🎩 | top hat | hat; tophat
👒 | sun hat | straw hat; woman's hat
👓 | glasses | eyeglasses; spectacles
🕶 | sunglasses | shades
👕 | t-shirt | tee shirt; shirt
🧥 | coat | jacket
🧦 | socks | pair of socks; matching socks
👗 | dress | blue dress
👜 | handbag | bag
🎒 | backpack | school bag; rucksack
🧳 | suitcase | luggage
☂ | umbrella | parasol
👞 | shoe | leather shoe; man's shoe
👟 | sneaker | sneakers; running shoe; trainer
💵 | banknote | cash; money; dollar bill
🪙 | coin | gold coin
🏺 | amphora | vase; jar
⚓ | anchor | ship anchor
🚩 | flag | red flag; triangular flag
🪧 | placard | sign; picket sign
🛑 | stop sign | octagonal sign
🚦 | traffic light | stoplight
🧱 | brick | bricks; brick wall
🪵 | wood | log; wooden log
🫖 | teapot | kettle
🍽 | plate | dinner plate; plate with cutlery
🥣 | bowl | bowl with spoon; cereal bowl
🤖 | robot | robot face; robots
🎨 | artist palette | palette; paint palette
⛄ | snowman | snow man

# Indoor Scenes
🛋 | couch and lamp | living room; sofa
🛏 | bed | bedroom
🛁 | bathtub | bathroom; bath
🚿 | shower | shower head
🚪 | door | wooden door
🪟 | window | window frame
🖼 | framed picture | painting; picture frame
🪞 | mirror | looking glass

# Outdoor Scenes
🏠 | house | home
🏡 | house with garden | cottage; home with a garden
🏢 | office building | building; tower block
🏪 | convenience store | store; shop; store front
🏰 | castle | european castle; palace
⛪ | church | chapel
🗽 | statue of liberty | lady liberty
🗻 | mount fuji | fuji
⛰ | mountain | mountains
🏔 | snow-capped mountain | snowy mountain
🌋 | volcano | erupting volcano
⛺ | tent | camping tent
🏖 | beach | beach with umbrella
🏝 | desert island | island
🏜 | desert | sand dunes
🏞 | national park | landscape; valley
🏛 | classical building | temple; museum
🛖 | hut | thatched hut
⛲ | fountain | water fountain
🏙 | cityscape | city; skyline; city skyline
🌅 | sunrise | sunrise over the sea
🌇 | sunset | dusk; city sunset
🌉 | bridge at night | bridge
🎡 | ferris wheel | big wheel
🎪 | circus tent | big top
🛣 | motorway | highway; road; street
🌍 | earth | the earth; planet earth; globe
🌕 | full moon | the moon; moon
🌙 | crescent moon | moon at night
☀ | sun | the sun; sunshine
☁ | cloud | white cloud
🌧 | rain cloud | rain
🌈 | rainbow | rainbow colors
🌪 | tornado | twister; whirlwind
🌫 | fog | mist
🌊 | wave | ocean wave; tidal wave; water wave
🔥 | fire | flame; campfire
💧 | droplet | water drop; raindrop
☄ | comet | meteor
🪐 | ringed planet | planet; saturn

# Illustrations
🔴 | red circle | red disc; red dot
🟡 | yellow circle | yellow dot
🟢 | green circle | green dot
🔵 | blue circle | blue dot
⚫ | black circle | black dot
🟥 | red square | red tile
🟦 | blue square | blue tile
🟨 | yellow square | yellow tile
🟩 | green square | green tile
🔺 | red triangle | triangle
🔷 | blue diamond | large blue diamond
⭕ | hollow red circle | circle; red ring
❤ | heart | red heart; love heart
⭐ | star | yellow star
✨ | sparkles | stars; glitter
💥 | explosion | collision; boom
💬 | speech bubble | speech balloon
🎵 | musical note | music note
❓ | question mark | red question mark
✅ | check mark | tick; green check mark
❌ | cross mark | cross; red x
☯ | yin yang | yin and yang
⚠ | warning sign | warning; caution sign
⚡ | lightning | lightning bolt; high voltage
❄ | snowflake | snow crystal
🌀 | cyclone | spiral; swirl
👻 | ghost | spooky ghost
💀 | skull | human skull
👽 | alien | alien face
"""


def _parse(table: str) -> tuple[Subject, ...]:
    subjects: list[Subject] = []
    category = None
    for raw in table.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            category = line.lstrip("# ").strip()
            if category not in CATEGORIES:
                raise ValueError(f"Unknown category {category!r} in the vocabulary table.")
            continue
        chars, name, synonyms = (part.strip() for part in line.split("|"))
        subjects.append(
            Subject(
                id=_slug(name),
                chars=chars,
                name=name,
                category=category,
                synonyms=tuple(s.strip() for s in synonyms.split(";") if s.strip()),
            )
        )
    return tuple(subjects)


EMOJI_SUBJECTS: tuple[Subject, ...] = _parse(_TABLE)

LETTER_SUBJECTS: tuple[Subject, ...] = tuple(
    Subject(
        id=f"letter_{letter.lower()}",
        chars=letter,
        name=f"letter '{letter}'",
        category="Letters",
        synonyms=(f"the letter '{letter}'", f"capital letter {letter}", f"uppercase {letter}"),
        kind="letter",
    )
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

SUBJECTS: tuple[Subject, ...] = EMOJI_SUBJECTS + LETTER_SUBJECTS


@cache
def subjects_by_id() -> dict[str, Subject]:
    """Every subject keyed by id (ids are unique; checked at import)."""
    return {subject.id: subject for subject in SUBJECTS}


def get_subject(subject_id: str) -> Subject:
    """The subject with this id.

    Raises:
        KeyError: No subject has that id (the message lists a few close ones).
    """
    try:
        return subjects_by_id()[subject_id]
    except KeyError:
        close = [s for s in subjects_by_id() if subject_id.split("_")[0] in s][:5]
        raise KeyError(f"No subject {subject_id!r} in the vocabulary; close: {close}") from None


@cache
def _phrase_table() -> dict[str, str | None]:
    table: dict[str, str | None] = {}
    for subject in SUBJECTS:  # canonical names first: they win over another's synonym
        table.setdefault(subject.phrase().lower(), subject.id)
    synonyms: dict[str, set[str]] = {}
    for subject in SUBJECTS:
        for name in subject.synonyms:
            synonyms.setdefault(subject.phrase(name).lower(), set()).add(subject.id)
    for phrase, ids in synonyms.items():
        if phrase not in table:
            table[phrase] = ids.pop() if len(ids) == 1 else None  # shared: ambiguous
    return table


def subject_of_phrase(prompt: str) -> str | None:
    """The id of the subject a prompt names, when it is just that subject's noun phrase.

    The canonical phrase ("a penguin", "An owl", "letter 'A'") or a synonym's ("a boat"
    for the sailboat), in any case and with or without a final full stop, names a
    subject; anything more ("a penguin on a boat") or a synonym two subjects share names
    none.

    Args:
        prompt: A content prompt.

    Returns:
        The subject id, or None.
    """
    return _phrase_table().get(prompt.strip().rstrip(".").lower())


def category_counts(subjects: tuple[Subject, ...] = SUBJECTS) -> dict[str, int]:
    """Number of subjects per category, in `CATEGORIES` order."""
    counts = {category: 0 for category in CATEGORIES}
    for subject in subjects:
        counts[subject.category] += 1
    return {category: count for category, count in counts.items() if count}


def _check_unique() -> None:
    seen_ids: set[str] = set()
    seen_chars: set[str] = set()
    for subject in SUBJECTS:
        if subject.id in seen_ids or subject.chars in seen_chars:
            raise ValueError(f"Duplicate subject in the vocabulary: {subject}")
        seen_ids.add(subject.id)
        seen_chars.add(subject.chars)


_check_unique()
