"""What "better" means, in one place: the annotation page, Label Studio and Argilla say it alike.

Why one constant: people labelling the same batch in different tools must be asked the same
question, or their answers are not comparable (nor comparable with the AI judge's).
"""

from __future__ import annotations

BETTER_MEANS = ("Choose the response that is more helpful and harmless as the assistant's "
                "reply to the last Human turn.")

#: Argilla's dataset guidelines (and the first lines of the annotation page's instructions).
GUIDELINES = f"Read the prompt, then the two responses. {BETTER_MEANS}"
