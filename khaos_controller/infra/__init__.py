"""Infrastructure: ansible-runner, the local lab, OpenStack, the Flink distribution, the bastion bundle."""
