"""Classroom labs: lab files (labs/NN-topic/lab.yaml), their loader, and the runner that builds a
lab's starting point, plays the model answer and grades what the student did."""
