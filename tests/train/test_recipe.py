"""Recipes by name from any folder, the shipped catalogue, and the starter workspace:
`load_recipe` and the `recipes` and `init` commands, run as a QA engineer runs them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from defectlens.cli import main
from defectlens.errors import InputError, RecipeError
from defectlens.train.detector_recipe import DetectorRecipe
from defectlens.train.recipe import (
    init_workspace,
    load_any_recipe,
    load_recipe,
    shipped_recipe,
    shipped_recipes,
)

SHIPPED = resources.files("defectlens.configs")
SHIPPED_NAMES = sorted(
    entry.name.removesuffix(".yaml") for entry in SHIPPED.iterdir() if entry.name.endswith(".yaml")
)


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own folder, which holds no recipe."""
    folder = tmp_path / "my-images"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_the_catalogue_is_what_ships() -> None:
    recipes = shipped_recipes()
    assert list(recipes) == SHIPPED_NAMES
    assert {"anomaly", "magnetic_tile"} <= set(recipes)
    for name, recipe in recipes.items():
        assert recipe.text == SHIPPED.joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        # one line a person reads in `recipes list`
        assert 20 < len(recipe.description) <= 90, recipe.description
        assert not recipe.description.startswith("#")


@pytest.mark.parametrize("name", SHIPPED_NAMES)
@pytest.mark.parametrize("form", ["{}", "{}.yaml", "configs/{}.yaml", "./configs/{}.yaml"])
def test_a_shipped_recipe_loads_by_name_from_any_folder(
    elsewhere: Path, name: str, form: str
) -> None:
    recipe = load_any_recipe(form.format(name))
    assert recipe.name == name
    assert recipe == load_any_recipe(Path(str(SHIPPED.joinpath(f"{name}.yaml"))))


def test_a_file_that_exists_wins_over_the_shipped_recipe(elsewhere: Path) -> None:
    (elsewhere / "configs").mkdir()
    (elsewhere / "configs" / "anomaly.yaml").write_text("name: mine\ndata: parts\n")
    (elsewhere / "anomaly.yaml").write_text("name: also-mine\n")
    mine = load_recipe("configs/anomaly.yaml")
    assert mine.name == "mine"
    assert mine.data == elsewhere / "configs" / "parts"  # relative to the recipe file
    assert load_recipe("anomaly.yaml").name == "also-mine"
    assert load_recipe("anomaly").name == "anomaly"  # no file called `anomaly`: the shipped
    (elsewhere / "magnetic_tile").mkdir()  # a folder is no recipe: the shipped one it is
    assert load_recipe("magnetic_tile").name == "magnetic_tile"
    with pytest.raises(RecipeError, match="is a folder, not a recipe file"):
        load_recipe("configs")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("anomlay", "unknown recipe 'anomlay'"),
        ("configs/nope.yaml", "configs/nope.yaml: recipe file not found"),
        ("other/anomaly.yaml", "other/anomaly.yaml: recipe file not found"),
    ],
)
def test_an_unknown_recipe_lists_the_known_ones(elsewhere: Path, spec: str, says: str) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(spec)
    message = str(caught.value)
    assert says in message
    for name in SHIPPED_NAMES:
        assert name in message
    assert "defectlens recipes list" in message


def test_train_with_an_unknown_name_is_a_usage_error(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "anomlay", "--data", str(elsewhere)]) == 2
    error = capsys.readouterr().err
    assert "unknown recipe 'anomlay'" in error and "magnetic_tile" in error


def test_recipes_list_names_and_describes_each_aligned(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["recipes", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == SHIPPED_NAMES
    recipes = shipped_recipes()
    columns = set()
    for line in lines:
        name = line.split()[0]
        description = recipes[name].description
        assert line.endswith(description)
        columns.add(line.index(description))
    assert len(columns) == 1  # the descriptions start in one column
    assert columns.pop() >= max(map(len, SHIPPED_NAMES)) + 2


def test_recipes_show_prints_the_recipe_as_shipped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes", "show", "magnetic_tile"]) == 0
    out = capsys.readouterr().out
    assert out == SHIPPED.joinpath("magnetic_tile.yaml").read_text(encoding="utf-8")
    assert "# " in out  # the comments come with it


def test_recipes_show_of_an_unknown_name_lists_the_known(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["recipes", "show", "bracket"]) == 2
    error = capsys.readouterr().err
    assert "unknown recipe 'bracket'" in error
    assert all(name in error for name in SHIPPED_NAMES)
    with pytest.raises(RecipeError):
        shipped_recipe("bracket")


def test_init_writes_a_workspace_to_start_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "bracket-line2"
    assert main(["init", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "recipe.yaml" in out and "README.txt" in out

    # the recipe: the shipped one with its comments, named after the workspace, reading
    # images/ next to it
    text = (folder / "recipe.yaml").read_text(encoding="utf-8")
    shipped = shipped_recipe("anomaly")
    for line in shipped.text.splitlines():
        if line.startswith("  ") and "#" in line:  # every commented field is still there
            assert line in text
    recipe = load_recipe(folder / "recipe.yaml")
    assert recipe.name == "bracket-line2"
    assert recipe.data == (folder / "images").resolve()
    rest = {"name", "data"}
    assert recipe.model_dump(exclude=rest) == load_recipe("anomaly").model_dump(exclude=rest)

    # the folders images are expected in, and the next commands
    assert (folder / "images" / "train" / "good").is_dir()
    assert (folder / "images" / "test" / "good").is_dir()
    readme = (folder / "README.txt").read_text(encoding="utf-8")
    for expected in (
        "images/train/good/",
        "images/test/<defect type>/",
        "ground_truth",
        "defectlens train recipe.yaml",
        "defectlens evaluate models/bracket-line2/",
        "defectlens models promote models/bracket-line2/",
        "defectlens serve",
        "at least 100 good images",
    ):
        assert expected in readme, expected


def test_init_from_another_recipe_into_an_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    written = init_workspace(folder, "magnetic_tile")
    assert written[0] == folder / "recipe.yaml"
    recipe = load_recipe(folder / "recipe.yaml")
    assert recipe.standardize == "local" and recipe.name == "tiles"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_init_keeps_names_yaml_would_misread_as_strings(tmp_path: Path) -> None:
    init_workspace(tmp_path / "2026")
    assert load_recipe(tmp_path / "2026" / "recipe.yaml").name == "2026"
    assert yaml.safe_load((tmp_path / "2026" / "recipe.yaml").read_text())["name"] == "2026"


def test_init_refuses_a_folder_that_holds_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["init", str(folder)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine"
    with pytest.raises(InputError, match="is a file"):
        init_workspace(folder / "notes.txt")
    with pytest.raises(RecipeError, match="unknown recipe 'nope'"):
        init_workspace(tmp_path / "new", "nope")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(("written", "read"), [("no", "no"), ("yes", "yes"), ("'no'", "no")])
def test_a_detector_recipe_takes_yes_and_no_as_written(
    tmp_path: Path, written: str, read: str
) -> None:
    # Unquoted, YAML reads them as booleans; the recipe's comment says `auto | yes | no`.
    shipped = SHIPPED.joinpath("deeppcb.yaml").read_text(encoding="utf-8")
    text = shipped.replace("reference: auto ", f"reference: {written} ", 1)
    assert f"reference: {written} " in text
    (tmp_path / "boards.yaml").write_text(text)
    recipe = load_any_recipe(tmp_path / "boards.yaml")
    assert isinstance(recipe, DetectorRecipe) and recipe.reference == read
