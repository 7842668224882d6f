"""Training: offline datasets, networks, offline RL, online DQN, distillation and evaluation."""
