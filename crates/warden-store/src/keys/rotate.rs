//! Rotating a purpose key (`keys rotate PURPOSE`): see the functions below.
