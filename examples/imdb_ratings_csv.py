"""Write IMDB reviews as CSV files with a three-class label from their star rating, to try
``elman train text`` on a real multi-class problem:

    python examples/imdb_ratings_csv.py ../shared/data/aclImdb.tar.gz runs/ratings
    elman train text --data runs/ratings/train.csv --test runs/ratings/test.csv \
        --out runs/ratings/model

Classes: "bad" (1-2 stars), "mixed" (3-4 and 7-8), "great" (9-10); the dataset has no 5 or 6.
"""

import csv
import re
import sys
import tarfile
from pathlib import Path

REVIEW = re.compile(r"aclImdb/(train|test)/(?:pos|neg)/\d+_(\d+)\.txt$")


def stars(rating: int) -> str:
    return "bad" if rating <= 2 else "great" if rating >= 9 else "mixed"


def main(archive: str, out: str) -> None:
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    with tarfile.open(archive) as tar:
        for member in tar:
            if match := REVIEW.search(member.name):
                text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                rows[match.group(1)].append((text, stars(int(match.group(2)))))
    Path(out).mkdir(parents=True, exist_ok=True)
    for split, samples in rows.items():
        with open(Path(out) / f"{split}.csv", "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["text", "label"])
            writer.writerows(sorted(samples))
        print(f"{Path(out) / f'{split}.csv'}: {len(samples)} reviews")


if __name__ == "__main__":
    main(*sys.argv[1:3])
