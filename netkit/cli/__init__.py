"""Typer commands: parse, call one engine function, render. No logic here."""
