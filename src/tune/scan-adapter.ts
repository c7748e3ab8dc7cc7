// The scan engine as the scheduler calls it.
