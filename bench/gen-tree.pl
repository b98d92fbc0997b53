#!/usr/bin/perl
# bench/gen-tree.pl OUT NFILES: writes a deterministic tree of NFILES small
# files (and symlinks) shaped like /usr/share, as fake store paths
# OUT/store/<hash>-<name>-<version>/share/..., for bench/layers.
#
# Perl because it is on every Debian machine (perl-base is Essential) and
# creates a million files in about a minute, where a bash loop takes an hour.
# Only built-ins are used. The random numbers come from our own xorshift32,
# not from perl's rand, so the names, the layout and the bytes are the same
# on every run; file sizes go through exp(), so another libm could in
# principle round one size differently, which does not matter for timing.
#
# Prints one line, "files=N symlinks=N dirs=N bytes=N packages=N".
use strict;
use warnings;

die "usage: $0 OUT NFILES\n" unless @ARGV == 2 && $ARGV[1] =~ /^[1-9][0-9]*$/;
my ($out, $nfiles) = @ARGV;
umask 022;    # modes are part of the tar; do not inherit the caller's umask

my $state = 2463534242;
# Next number of Marsaglia's xorshift32, in 0 .. 2^32-1.
sub rnd {
    $state ^= ($state << 13) & 0xFFFFFFFF;
    $state ^= $state >> 17;
    $state ^= ($state << 5) & 0xFFFFFFFF;
    return $state;
}
sub below { return rnd() % $_[0] }
sub pick  { return $_[ below(scalar @_) ] }

my @words = qw(
  about access alpha archive array audio backend base binary block border
  buffer build bundle cache calendar canvas channel charset client color
  common config console context core cursor data debug default desktop
  device dialog digest display driver editor engine error event export
  extension filter font format frame gettext glib graph group handler header
  helper icon image index input kernel keyboard label layout legacy library
  locale manual media memory menu message module monitor mount network
  object option output package panel parser pattern plugin policy pool
  portable printer profile protocol proxy query queue reader record render
  resource router runtime sample schema screen script search server session
  shell signal socket source sound stream string style symbol system table
  target template terminal texture theme thread timer token tool trace
  transfer unicode update user utils value vector viewer volume widget
  window worker writer xml zone);
my @exts = qw(txt html 1.gz 3.gz 5.gz 8.gz mo png svg xml desktop conf py pm
  h json css js gz list);

# Text contents: 4096 distinct lines of words, then a corpus made of lines
# drawn at random. A file is a slice of the corpus at a random offset: its
# bytes compress like text (repeated words and lines), but consecutive files
# do not repeat each other, so zstd's large window finds no free lunch.
my $CORPUS_BYTES = 32 << 20;
my @lines;
for (1 .. 4096) {
    my $n = 3 + below(10);
    my $line = (' ' x (4 * below(3))) . join(' ', map { pick(@words) } 1 .. $n);
    $line .= pick('.', ',', ':', ';', '', '', ' {', ' }', '()') . "\n";
    push @lines, $line;
}
my $corpus = '';
$corpus .= $lines[ below(4096) ] while length($corpus) < $CORPUS_BYTES;

# Sizes follow the percentiles of the files in a Debian /usr/share
# (about 44k files): p10 432 B, p25 747, p50 1.3 KiB, p75 2.8 KiB,
# p90 12 KiB, p99 163 KiB; capped at 1 MiB. Log-uniform within a bucket,
# uniform in the first one (which holds the empty files).
my @buckets = (    # [cumulative per 10000, low, high]
    [1000, 0, 432], [2500, 432, 747], [5000, 747, 1328], [7500, 1328, 2848],
    [9000, 2848, 12693], [9900, 12693, 166704], [10000, 166704, 1 << 20]);
sub file_size {
    my $u = below(10000);
    for my $b (@buckets) {
        my ($cum, $lo, $hi) = @$b;
        next if $u >= $cum;
        return $lo + below($hi - $lo) if $lo == 0;
        return int($lo * exp(log($hi / $lo) * below(65536) / 65536));
    }
}

# Store path hashes use Nix's base-32 alphabet.
my @nix32 = split //, '0123456789abcdfghijklmnpqrsvwxyz';
sub store_hash { return join '', map { $nix32[ below(32) ] } 1 .. 32 }

sub make_dir { mkdir $_[0] or die "mkdir $_[0]: $!\n" }

# Packages of uneven size (weights 1 to 8), about 400 entries each.
my $npkg = int($nfiles / 400) || 1;
my @weights = map { 1 + below(8) } 1 .. $npkg;
my $total_weight = 0;
$total_weight += $_ for @weights;

make_dir($out);
make_dir("$out/store");
my ($files, $symlinks, $dirs, $bytes, $serial) = (0, 0, 0, 0, 0);
my $cum_weight = 0;
for my $p (0 .. $npkg - 1) {
    my $first = int($nfiles * $cum_weight / $total_weight);
    $cum_weight += $weights[$p];
    my $count = int($nfiles * $cum_weight / $total_weight) - $first;

    my $root = sprintf '%s/store/%s-%s-%s-%d.%d.%d', $out, store_hash(),
      pick(@words), pick(@words), below(10), below(40), below(20);
    make_dir($root);
    # Directories: each hangs below a random earlier one, at most 7 deep
    # under share/; about 14 entries a directory, as in /usr/share.
    my @dirs = (['share', 1]);
    my %taken;
    make_dir("$root/share");
    for (2 .. (int($count / 14) || 1)) {
        my ($parent, $depth) = @{ $dirs[ below(scalar @dirs) ] };
        next if $depth >= 7;
        my $name = pick(@words) . (below(3) ? '' : '-' . pick(@words));
        next if $taken{"$parent/$name"}++;
        make_dir("$root/$parent/$name");
        push @dirs, ["$parent/$name", $depth + 1];
    }
    $dirs += @dirs + 1;

    # Entries: 95% regular files (3% of them executable), 5% symlinks to a
    # file in the same directory, like man page aliases.
    my %last_file;
    for (1 .. $count) {
        my $dir = $dirs[ below(scalar @dirs) ][0];
        my $name = below(50)
          ? join('-', pick(@words), pick(@words))
          : join('_', map { pick(@words) } 1 .. 4 + below(8));    # long names
        $name .= sprintf '-%x.%s', $serial++, pick(@exts);
        my $path = "$root/$dir/$name";
        if (below(20) == 0 && exists $last_file{$dir}) {
            symlink($last_file{$dir}, $path) or die "symlink $path: $!\n";
            $symlinks++;
            next;
        }
        my $size = file_size();
        open(my $fh, '>', $path) or die "create $path: $!\n";
        binmode $fh;
        print {$fh} substr($corpus, below($CORPUS_BYTES - $size), $size);
        close($fh) or die "write $path: $!\n";
        chmod(0755, $path) or die "chmod $path: $!\n" if below(100) < 3;
        $last_file{$dir} = $name;
        $files++;
        $bytes += $size;
    }
}
print "files=$files symlinks=$symlinks dirs=$dirs bytes=$bytes packages=$npkg\n";
